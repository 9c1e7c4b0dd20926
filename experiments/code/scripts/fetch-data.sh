#!/usr/bin/env bash
# Fetches the code experiment's Java sources: the -sources.jar of nine Apache-2.0 projects from Maven Central, pinned
# by version and SHA-256, into experiments/code/data/downloads (ignored by git), or into DIR/downloads for $1 = DIR.
# The same list, with each project's licence, is experiments/code/projects.json (CodeProjectsTest checks that the
# two agree). Idempotent: a jar that is there and matches its checksum is not fetched again. Needs Maven (its
# dependency plugin copies each jar out of the local repository, downloading it there first if needed).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$here/data}"
mkdir -p "$dest/downloads"
dest="$(cd "$dest" && pwd)"

# groupId:artifactId:version  SHA-256 of <artifactId>-<version>-sources.jar
jars=(
  "com.google.guava:guava:33.5.0-jre 79423ae87a2203950e0e3ce2a00682b3b8d8557e631bbf662dba5494fe3b55cb"
  "org.apache.commons:commons-lang3:3.17.0 5fdcac21ad329766054a95367d7583dfcdca737d221d5e01a5f2a198c04c6b18"
  "org.apache.commons:commons-collections4:4.5.0 75f1bef9447cce189743f7d52f63a669bd796ae19ca863e1f22db1d5b6b504a6"
  "org.apache.commons:commons-math3:3.6.1 e2ff85a3c360d56c51a7021614a194f3fbaf224054642ac535016f118322934d"
  "commons-io:commons-io:2.18.0 1f51af8452a6160a30dbcd8c93e3c69fa165f8adbbac1cc9aac7b0006f3f8c9b"
  "org.apache.commons:commons-text:1.13.0 ef8983f2336be8ee0aea07175d3f661101142ba233d830c59044dda722c9149c"
  "commons-codec:commons-codec:1.17.1 2283aff7f425dff23ebdb7a8fc0f03ae21b4ced7a43aacba47cedae126dc5d4a"
  "org.apache.commons:commons-compress:1.27.1 90839ce19b8afb8ee50db75c84aa7555ebc054ba1bd43fdb2202cbf094c77f81"
  "org.apache.commons:commons-csv:1.12.0 f6c3bdc5c21e31ea1009f6da051386978a91c860679f44ad705bbec9643c8f6f"
)
# The plugin that copies them, pinned too (a bare dependency:copy would take whatever version Maven resolves).
plugin="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

fail() { echo "fetch-data: error: $*" >&2; exit 1; }

sha() { sha256sum "$1" | cut -d' ' -f1; }

cd "$dest/downloads"   # no pom.xml here: Maven runs the goal without a project
fetched=0
for j in "${jars[@]}"; do
  read -r coords want <<<"$j"
  IFS=: read -r group artifact version <<<"$coords"
  file="$artifact-$version-sources.jar"
  if [ -f "$file" ] && [ "$(sha "$file")" = "$want" ]; then
    continue
  fi
  rm -f "$file"
  command -v mvn >/dev/null || fail "mvn not found: the sources come from Maven Central through Maven"
  if ! out="$(mvn -B -q "$plugin:copy" -Dartifact="$coords:jar:sources" -DoutputDirectory=. 2>&1)"; then
    echo "$out" | tail -n 20 >&2
    fail "mvn could not fetch $coords:jar:sources (is Maven Central reachable?)"
  fi
  [ -f "$file" ] || fail "mvn ran but left no $dest/downloads/$file"
  got="$(sha "$file")"
  [ "$got" = "$want" ] || { rm -f "$file"; fail "$file: SHA-256 $got, expected $want (removed; the registry serves another build)"; }
  fetched=$((fetched + 1))
done
n=$(ls "$dest/downloads"/*-sources.jar | wc -l)
echo "fetch-data: $dest/downloads ($n sources jars, $fetched fetched now, $(du -sh "$dest/downloads" | cut -f1))"
