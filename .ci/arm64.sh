#!/usr/bin/env bash
# arm64 (aarch64) check under user-mode emulation (issue 14): cross-compiles
# mobilevit._C for aarch64 with Debian's gcc-aarch64-linux-gnu, runs it with
# qemu-aarch64 on Debian's own arm64 CPython 3.11 + NumPy (extracted into a
# private sysroot, the host's dpkg untouched) and compares it to outputs the
# x86 build of the same commit and PyTorch recorded on the host.  The NEON
# kernels are the default there; every check runs them and the scalar ref.
# Correctness only: nothing timed under qemu is a performance number.
# See docs/arm64.md.  Run as root on Debian 12 x86-64:  bash .ci/arm64.sh
#
# Environment (all optional):
#   ARM64_WORK     scratch folder (default: a new /tmp/mv-arm64.XXXXXX)
#   ARM64_SYSROOT  arm64 sysroot, reused when complete (default: /tmp/mv-arm64-sysroot)
#   VENV           host venv with torch/timm for the references (default: .ci-venv,
#                  created with the pinned test versions if it lacks them)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
T_ALL=$SECONDS
step() { echo "=== arm64: $*"; T_STEP=$SECONDS; }
done_step() { echo "=== arm64: ... $1 in $((SECONDS - T_STEP))s"; TIMES+=("$1: $((SECONDS - T_STEP))s"); }
declare -a TIMES=()

[ "$(uname -m)" = x86_64 ] || { echo "arm64: this script runs on an x86-64 host"; exit 1; }
WORK=${ARM64_WORK:-$(mktemp -d /tmp/mv-arm64.XXXXXX)}
SYSROOT=${ARM64_SYSROOT:-/tmp/mv-arm64-sysroot}
mkdir -p "$WORK"
export DEBIAN_FRONTEND=noninteractive

# ---- 1. host tools (cross compiler, qemu-user) from Debian's archive ---------
step "host packages"
HOST_PKGS="gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"
missing=""
for p in $HOST_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "arm64: $HOST_PKGS already installed"
else
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
aarch64-linux-gnu-gcc --version | head -1
qemu-aarch64 --version | head -1
done_step "host packages"

# ---- 2. arm64 sysroot: Debian's python3.11, numpy, pytest, libgomp -----------
step "arm64 sysroot"
bash .ci/arm64/sysroot.sh "$SYSROOT"
done_step "arm64 sysroot"
PY_ARM="qemu-aarch64 -L $SYSROOT $SYSROOT/usr/bin/python3.11"

# ---- 3. host venv with torch/timm for the references -------------------------
step "host venv"
VENV=${VENV:-.ci-venv}
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import torch, timm, numpy, setuptools' 2>/dev/null; then
    echo "arm64: using $VENV"
else
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    # the pins of pyproject.toml's [test] extra
    "$VENV/bin/python" -m pip install -q numpy setuptools wheel "torch==2.14.1" "torchvision==0.29.1" "timm==1.0.29"
fi
HOST_PY=$(cd "$VENV" && pwd)/bin/python
done_step "host venv"

# ---- 4. scratch copies of the commit, x86 build, references ------------------
COMMIT=$(git rev-parse HEAD)
step "x86 build + references (commit ${COMMIT:0:12})"
[ -z "$(git status --porcelain -- csrc mobilevit setup.py .ci/arm64)" ] || \
    echo "arm64: note: uncommitted changes are NOT tested; this checks commit $COMMIT"
rm -rf "$WORK/x86" "$WORK/a64" "$WORK/refs"
mkdir -p "$WORK/x86" "$WORK/a64"
git archive "$COMMIT" | tar -x -C "$WORK/x86"
git archive "$COMMIT" | tar -x -C "$WORK/a64"
(cd "$WORK/x86" && "$HOST_PY" setup.py -q build_ext --inplace >"$WORK/x86-build.log" 2>&1) \
    || { tail -30 "$WORK/x86-build.log"; echo "arm64: x86 build failed"; exit 1; }
(cd "$WORK/x86" && PYTHONPATH="$WORK/x86" "$HOST_PY" .ci/arm64/make_refs.py "$WORK/refs")
done_step "x86 build + references"

# ---- 5. cross-compile mobilevit._C for aarch64 ------------------------------
step "aarch64 cross build"
SO=mobilevit/_C.cpython-311-aarch64-linux-gnu.so
NPINC=$SYSROOT/usr/lib/python3/dist-packages/numpy/core/include
# setup.py's flags (on AArch64 it adds -ffp-contract=off); the Python headers are the
# sysroot's (pyconfig.h lives in <aarch64-linux-gnu/python3.11/>, found through
# -idirafter after the cross libc)
(cd "$WORK/a64" && aarch64-linux-gnu-gcc -shared -fPIC \
    -std=gnu11 -O3 -fno-strict-aliasing -Wall -Wno-unused-function -fvisibility=hidden -fno-wrapv -fopenmp \
    -ffp-contract=off \
    -I"$SYSROOT/usr/include/python3.11" -idirafter "$SYSROOT/usr/include" -I"$NPINC" -Icsrc \
    csrc/ops/*.c csrc/model/*.c csrc/binding/*.c -o "$SO" -lm 2>&1 | tee "$WORK/a64-build.log")
[ -f "$WORK/a64/$SO" ] || { echo "arm64: cross build failed"; exit 1; }
file "$WORK/a64/$SO" | sed "s|$WORK/a64/||"
aarch64-linux-gnu-readelf -d "$WORK/a64/$SO" | awk '/NEEDED/ {printf "  needs %s\n", $NF}'
done_step "aarch64 cross build"

# ---- 6. under qemu-aarch64: import, available_isas, the check ---------------
export PYTHONDONTWRITEBYTECODE=1
step "qemu: import mobilevit"
(cd "$WORK" && PYTHONPATH="$WORK/a64" $PY_ARM -c '
import platform, sys, numpy, mobilevit
print("arm64: python", sys.version.split()[0], platform.machine(), "numpy", numpy.__version__)
print("arm64: mobilevit from", mobilevit.__file__)
print("arm64: available_isas() =", mobilevit.available_isas(), " get_isa() =", mobilevit.get_isa(),
      " threads =", mobilevit.get_num_threads())
assert platform.machine() == "aarch64" and mobilevit.available_isas() == ["ref", "neon"]
assert mobilevit.get_isa() == "neon"')
# MOBILEVIT_ISA picks the path at import; a value this CPU cannot run fails the import
for want in ref neon; do
    got=$(cd "$WORK" && MOBILEVIT_ISA=$want PYTHONPATH="$WORK/a64" $PY_ARM -c 'import mobilevit; print(mobilevit.get_isa())')
    [ "$got" = "$want" ] || { echo "arm64: MOBILEVIT_ISA=$want gave $got"; exit 1; }
    echo "arm64: MOBILEVIT_ISA=$want -> get_isa() = $got"
done
if (cd "$WORK" && MOBILEVIT_ISA=avx2 PYTHONPATH="$WORK/a64" $PY_ARM -c 'import mobilevit' 2>"$WORK/isa-err.txt"); then
    echo "arm64: MOBILEVIT_ISA=avx2 imported on aarch64"; exit 1
fi
grep -q "not supported by this CPU" "$WORK/isa-err.txt" || { cat "$WORK/isa-err.txt"; exit 1; }
echo "arm64: MOBILEVIT_ISA=avx2 -> $(tail -1 "$WORK/isa-err.txt")"
done_step "qemu: import"

# The repo's NaN/Inf/denormal suite, neon vs ref (torch-free there), its slow sweep too,
# and the ISA-settings test; then ops + whole networks vs the host's references.
step "qemu: pytest tests/test_kernel_semantics.py (all, incl. -m slow) + ISA settings + .ci/arm64/test_arm64.py"
rc=0
(cd "$WORK/a64" && MV_ARM64_REFS="$WORK/refs" PYTHONPATH="$WORK/a64:$WORK/a64/.ci/arm64" \
    $PY_ARM -m pytest -p no:cacheprovider -q -m "slow or not slow" --durations=5 \
    tests/test_kernel_semantics.py tests/test_api.py::test_threads_and_isa_settings .ci/arm64/test_arm64.py) || rc=$?
done_step "qemu: pytest"

# ---- 7. the NEON file built by clang as well (when the host has clang) --------
# clang's optimiser rewrites NEON code differently (it once turned the x86-rule
# compare + select into FMAX); the rest stays gcc's.  Not the slow sweep: time.
if [ $rc -eq 0 ] && command -v clang >/dev/null; then
    step "clang: simd_neon.c by $(clang --version | head -1), qemu pytest"
    rm -rf "$WORK/a64-clang" && cp -r "$WORK/a64" "$WORK/a64-clang" && rm -f "$WORK/a64-clang/$SO"
    (cd "$WORK/a64-clang" && clang --target=aarch64-linux-gnu -c -fPIC -std=gnu11 -O3 -fno-strict-aliasing -Wall \
        -Wno-unused-function -fvisibility=hidden -fno-wrapv -ffp-contract=off -isystem /usr/aarch64-linux-gnu/include \
        -Icsrc csrc/ops/simd_neon.c -o "$WORK/simd_neon.clang.o" &&
     aarch64-linux-gnu-gcc -shared -fPIC \
        -std=gnu11 -O3 -fno-strict-aliasing -Wall -Wno-unused-function -fvisibility=hidden -fno-wrapv -fopenmp \
        -ffp-contract=off \
        -I"$SYSROOT/usr/include/python3.11" -idirafter "$SYSROOT/usr/include" -I"$NPINC" -Icsrc \
        $(ls csrc/ops/*.c | grep -v simd_neon.c) csrc/model/*.c csrc/binding/*.c "$WORK/simd_neon.clang.o" -o "$SO" -lm) \
        || { echo "arm64: clang build of simd_neon.c failed"; rc=1; }
    if [ $rc -eq 0 ]; then
        (cd "$WORK/a64-clang" && MV_ARM64_REFS="$WORK/refs" PYTHONPATH="$WORK/a64-clang:$WORK/a64-clang/.ci/arm64" \
            $PY_ARM -m pytest -p no:cacheprovider -q tests/test_kernel_semantics.py .ci/arm64/test_arm64.py) || rc=$?
    fi
    done_step "clang: simd_neon.c"
fi

echo "=== arm64: summary (commit ${COMMIT:0:12}; qemu times are emulation, not performance)"
for t in "${TIMES[@]}"; do echo "  $t"; done
echo "  total: $((SECONDS - T_ALL))s"
if [ $rc -eq 0 ]; then echo "arm64: passed"; else echo "arm64: FAILED (pytest rc=$rc)"; fi
exit $rc
