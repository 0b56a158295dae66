#!/usr/bin/env bash
# sysroot.sh DIR: an arm64 Debian 12 sysroot with python3.11 (+ headers),
# numpy, pytest, PIL and libgomp1, for qemu-aarch64 -L DIR.  A private apt
# (APT_CONFIG: own lists, cache, empty dpkg status, arm64 only, the host's
# sources) resolves the dependency closure and downloads; dpkg-deb -x
# extracts.  Nothing is installed on the host and its dpkg is not touched
# (no dpkg --add-architecture).  Maintainer scripts do not run, so the
# alternatives numpy needs (libblas.so.3, liblapack.so.3) are linked here.
set -euo pipefail
R=${1:?usage: sysroot.sh DIR}
PKGS="python3.11 libpython3.11-dev python3-numpy python3-pytest python3-pil libgomp1 libc6"
STAMP="$R/.mv-arm64-sysroot"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PKGS" ]; then
    echo "arm64: sysroot $R already complete"; exit 0
fi
rm -rf "$R"
A=$R.apt
rm -rf "$A"
mkdir -p "$A/sources.list.d" "$A/preferences.d" "$A/lists/partial" "$A/archives/partial" "$A/log" "$R"
: > "$A/status"
SRC=/etc/apt/sources.list.d/debian.sources
if [ -f "$SRC" ]; then   # deb822 (Debian 12 images): same archive, arm64 only
    sed -e '/^Types:/a Architectures: arm64' "$SRC" > "$A/sources.list.d/debian.sources"
else                     # one-line format
    grep -h '^deb ' /etc/apt/sources.list | sed -e 's/^deb \(\[[^]]*\] \)\?/deb [arch=arm64] /' \
        > "$A/sources.list.d/debian.list"
fi
cat > "$A/apt.conf" <<EOC
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
Dir::State "$A";
Dir::State::Lists "$A/lists";
Dir::State::status "$A/status";
Dir::Cache "$A";
Dir::Cache::archives "$A/archives";
Dir::Etc::SourceList "/dev/null";
Dir::Etc::SourceParts "$A/sources.list.d";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "$A/preferences.d";
Dir::Log "$A/log";
APT::Install-Recommends "false";
APT::Get::Assume-Yes "true";
EOC
export APT_CONFIG=$A/apt.conf
apt-get update -qq
# shellcheck disable=SC2086
apt-get install --download-only -qq $PKGS >/dev/null
n=0
for d in "$A"/archives/*.deb; do dpkg-deb -x "$d" "$R"; n=$((n + 1)); done
L=$R/usr/lib/aarch64-linux-gnu
ln -sf blas/libblas.so.3 "$L/libblas.so.3"
ln -sf lapack/liblapack.so.3 "$L/liblapack.so.3"
echo "arm64: sysroot $R: $n packages, $(du -sh "$R" | cut -f1)"
rm -rf "$A"
echo "$PKGS" > "$STAMP"
