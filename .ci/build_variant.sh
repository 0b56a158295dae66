#!/usr/bin/env bash
# Build variants of mobilevit._C (issue 14.3), each in a scratch copy of the working tree with its
# own build dirs (the in-place build of the tree is not touched), then the op/kernel/API tests
# and tests/test_build.py against that build:
#
#   bash .ci/build_variant.sh clang-libomp   # CC=clang, MOBILEVIT_OPENMP=1 (LLVM libomp), -Werror
#   bash .ci/build_variant.sh no-openmp      # CC=clang, MOBILEVIT_OPENMP=0, -Werror; then the
#                                            # automatic fallback: gcc behind a wrapper that refuses
#                                            # -fopenmp, MOBILEVIT_OPENMP unset -> single-threaded
#                                            # build (test_build.py), MOBILEVIT_OPENMP=1 -> an error
#   VARIANT_KEEP=1 VARIANT_DIR=/tmp/mv-variant bash .ci/build_variant.sh clang-libomp
#
# Every build fails on any compiler warning (-Wall -Wextra, MOBILEVIT_WERROR=1) and on a
# non-portable flag (-march/-mtune/-ffast-math) in its command lines.  clang and libomp-dev come
# from Debian's archive when missing (apt-get, as root; CI runs as root).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VARIANT=${1:?usage: build_variant.sh clang-libomp|no-openmp}
case "$VARIANT" in clang-libomp|no-openmp) ;; *) echo "build_variant: unknown variant $VARIANT"; exit 2 ;; esac
if [ -z "${PYTHON:-}" ] && [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$ROOT/${VENV:-.ci-venv}/bin/python" ]; then
    PYTHON="$ROOT/${VENV:-.ci-venv}/bin/python"
fi
PY=${PYTHON:-python}
WORK=${VARIANT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/mv-$VARIANT.XXXXXX")}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
[ "${VARIANT_KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
T0=$SECONDS
step() { echo "=== $VARIANT: $* ($((SECONDS - T0))s)"; }
die() { echo "$VARIANT: FAILED: $*"; exit 1; }
TESTS="tests/test_ops.py tests/test_kernel_semantics.py tests/test_api.py tests/test_build.py"

# ---- tools ------------------------------------------------------------------------------------
step "compilers"
need="clang"
[ "$VARIANT" = clang-libomp ] && need="clang libomp-dev"
missing=""
for p in $need; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "$VARIANT: installing$missing from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
clang --version | head -1
gcc --version | head -1

# pyproject's build requirements in the build venv (a Python 3.11 venv starts with setuptools 65,
# too old for its license field)
"$PY" -c "import numpy, setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 77)" \
    2>/dev/null || "$PY" -m pip install -q "setuptools>=77" wheel numpy
# ---- scratch copy -----------------------------------------------------------------------------
SRC=$WORK/src
rm -rf "$SRC" "$WORK/build"
mkdir -p "$SRC"
git -C "$ROOT" ls-files -co --exclude-standard -z | grep -zv '^build/' \
    | (cd "$ROOT" && tar --null -cf - -T -) | tar -xf - -C "$SRC"
find "$SRC/mobilevit" -name '_C*.so' -delete

# build NAME ENV...: an in-place build of the copy with ENV, its own build dirs, log in $WORK
build() {
    local name=$1; shift
    find "$SRC/mobilevit" -name '_C*.so' -delete
    rm -rf "$WORK/build/$name"
    if ! (cd "$SRC" && env "$@" "$PY" setup.py build_ext --inplace \
            -b "$WORK/build/$name/lib" -t "$WORK/build/$name/tmp" >"$WORK/$name.log" 2>&1); then
        tail -40 "$WORK/$name.log"
        return 1
    fi
    grep -E '^mobilevit: ' "$WORK/$name.log" || true
    if grep -E -- ' -c csrc/.*(-march=|-mtune=|-ffast-math|-Ofast)' "$WORK/$name.log"; then
        die "$name: a non-portable flag in the build"
    fi
    if grep -E 'warning:' "$WORK/$name.log"; then die "$name: compiler warnings"; fi
}

run_tests() {   # run_tests EXPECT_OPENMP EXPECT_COMPILER FILES...
    local omp=$1 cc=$2; shift 2
    (cd "$SRC" && env -u MOBILEVIT_ISA MOBILEVIT_EXPECT_OPENMP="$omp" MOBILEVIT_EXPECT_COMPILER="$cc" \
        PYTHONPATH="$SRC" "$PY" -m pytest -q -p no:cacheprovider "$@")
}

show_info() {
    (cd "$WORK" && PYTHONPATH="$SRC" "$PY" -c "from mobilevit.cli import main; main(['info'])" | grep -E '^(threads|compiler|isa):')
}

if [ "$VARIANT" = clang-libomp ]; then
    step "build: CC=clang MOBILEVIT_OPENMP=1 MOBILEVIT_WERROR=1"
    build clang CC=clang MOBILEVIT_OPENMP=1 MOBILEVIT_WERROR=1 || die "clang build"
    SO=$(ls "$SRC"/mobilevit/_C*.so)
    NEEDED=$(readelf -d "$SO" | awk '/NEEDED/ {gsub(/[][]/, "", $NF); printf "%s ", $NF}')
    echo "$VARIANT: needs $NEEDED"
    case "$NEEDED" in *libomp.so*) ;; *) die "the clang build does not link LLVM's libomp" ;; esac
    case "$NEEDED" in *libgomp*) die "the clang build links libgomp" ;; esac
    show_info
    step "tests ($TESTS)"
    run_tests 1 clang $TESTS || die "tests"
else
    step "build: CC=clang MOBILEVIT_OPENMP=0 MOBILEVIT_WERROR=1"
    build clang-noomp CC=clang MOBILEVIT_OPENMP=0 MOBILEVIT_WERROR=1 || die "clang no-OpenMP build"
    SO=$(ls "$SRC"/mobilevit/_C*.so)
    if readelf -d "$SO" | grep -E 'NEEDED.*(gomp|omp)'; then die "the no-OpenMP build links an OpenMP runtime"; fi
    show_info
    step "tests ($TESTS)"
    run_tests 0 clang $TESTS || die "tests"

    # a compiler that cannot do OpenMP: gcc behind a wrapper that refuses -fopenmp
    mkdir -p "$WORK/bin"
    cat >"$WORK/bin/gcc-noomp" <<'EOF'
#!/bin/sh
for a in "$@"; do
    case "$a" in -fopenmp|-fopenmp=*|-fopenmp-*) echo "gcc-noomp: error: unsupported option '$a'" >&2; exit 1 ;; esac
done
exec gcc "$@"
EOF
    chmod +x "$WORK/bin/gcc-noomp"
    step "MOBILEVIT_OPENMP=1 with a compiler without OpenMP must fail"
    if build fail-required CC="$WORK/bin/gcc-noomp" MOBILEVIT_OPENMP=1 >/dev/null; then
        die "MOBILEVIT_OPENMP=1 built without OpenMP"
    fi
    grep -q 'MOBILEVIT_OPENMP=1 but the compiler cannot build an OpenMP program' "$WORK/fail-required.log" \
        || { tail -5 "$WORK/fail-required.log"; die "no clear message for MOBILEVIT_OPENMP=1"; }
    echo "$VARIANT: refused, with: $(grep -o 'MOBILEVIT_OPENMP=1 but[^(]*' "$WORK/fail-required.log" | head -1)"
    step "build: CC=gcc-noomp (MOBILEVIT_OPENMP unset: automatic fallback) MOBILEVIT_WERROR=1"
    build gcc-fallback CC="$WORK/bin/gcc-noomp" env -u MOBILEVIT_OPENMP MOBILEVIT_WERROR=1 \
        || die "fallback build"
    grep -q 'OpenMP not available (tried: -fopenmp): building single-threaded' "$WORK/gcc-fallback.log" \
        || die "the fallback build did not say it fell back"
    show_info
    step "tests (tests/test_build.py)"
    run_tests 0 gcc tests/test_build.py || die "tests"
fi
echo "$VARIANT: passed in $((SECONDS - T0))s"
