#!/usr/bin/env bash
# Splits the fetched sources into the code experiment's data (docs/formats.md, "The code experiment's data"):
#   experiments/code/scripts/prepare-data.sh OUT [--data DIR] [--recipe FILE]
# Builds calm4j-core and calm4j-code (mvn package, tests skipped; nothing installed), then runs
# dev.calm4j.experiment.code.CodeData on experiments/code/data/downloads (fetch-data.sh fetches it).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 OUT [--data DIR] [--recipe FILE]" >&2; exit 2; }
out="$1"; shift
cd "$repo"
# dependency:build-classpath in the same reactor resolves calm4j-core to its freshly built jar, not to ~/.m2.
mvn -B -q ${MVN_OFFLINE:+-o} -pl experiments/code -am -DskipTests package \
  org.apache.maven.plugins:maven-dependency-plugin:3.8.1:build-classpath \
  -Dmdep.outputFile=target/classpath.txt -Dmdep.includeScope=runtime >&2
cp="experiments/code/target/calm4j-code-0.1.0-SNAPSHOT.jar:$(cat experiments/code/target/classpath.txt)"
exec java -cp "$cp" dev.calm4j.experiment.code.CodeData --out "$out" "$@"
