#!/usr/bin/env bash
# Build mobilevit._C with AddressSanitizer + UndefinedBehaviorSanitizer in a scratch copy of the
# working tree (the normal install and the source tree are not touched) and run the test suite
# against that build, failing on any sanitizer report.
#
#   bash .ci/sanitize.sh                 # the whole test suite under ASan + UBSan
#   SANITIZE_TESTS="tests/test_ops.py tests/test_api.py" bash .ci/sanitize.sh   # a subset
#   SANITIZE_TESTS="tests/test_ops.py tests/test_hardening.py" bash .ci/sanitize.sh
#   SANITIZE_KEEP=1 SANITIZE_DIR=/tmp/mv-sanitize bash .ci/sanitize.sh   # keep the build
#
# The sanitized build (MOBILEVIT_SANITIZE=1 in setup.py) compiles with -fsanitize=address,undefined,
# float-cast-overflow, -fno-sanitize-recover=all and -fno-wrapv after CPython's inherited -fwrapv
# (which makes signed overflow defined and so invisible to UBSan's signed-integer-overflow check).
#
# Needs gcc (libasan/libubsan ship with it on Debian) and the venv made by .ci/run (numpy, the test
# extras); installs setuptools into it if missing.  Python's own allocations go through malloc
# (PYTHONMALLOC=malloc) so ASan sees them; leak checking is off (interpreter-lifetime allocations).
# Reports are also written to files (log_path) and any such file fails the run, so a report in a
# subprocess a test expected to fail is not lost.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# the venv made by .ci/run unless one is active or PYTHON is set
if [ -z "${PYTHON:-}" ] && [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$ROOT/${VENV:-.ci-venv}/bin/python" ]; then
    PYTHON="$ROOT/${VENV:-.ci-venv}/bin/python"
fi
PY=${PYTHON:-python}
WORK=${SANITIZE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/mv-sanitize.XXXXXX")}
# Default: the whole test suite (about 2 minutes of tests on 2 idle cores, plus the build).
# SANITIZE_TESTS narrows it, e.g. to the kernel/op, API, checkpoint and hardening tests.
TESTS=${SANITIZE_TESTS:-"tests"}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
SRC=$WORK/src
rm -rf "$WORK/reports"
mkdir -p "$WORK/reports"
REUSE=0
if [ "${SANITIZE_REUSE:-0}" = 1 ] && ls "$SRC"/mobilevit/_C*.so >/dev/null 2>&1; then
    REUSE=1   # SANITIZE_REUSE=1: test the build a previous SANITIZE_KEEP=1 run left in SANITIZE_DIR
else
    rm -rf "$SRC"
    mkdir -p "$SRC"
fi

cleanup() { [ "${SANITIZE_KEEP:-0}" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT

if [ $REUSE = 0 ]; then
# 1. scratch copy: tracked + untracked-but-not-ignored files (so uncommitted edits are tested)
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$ROOT" ls-files -co --exclude-standard -z | grep -zv '^build/' \
        | (cd "$ROOT" && tar --null -cf - -T -) | tar -xf - -C "$SRC"
else
    tar -C "$ROOT" --exclude=./build --exclude=./.git --exclude='./.ci-venv' -cf - . | tar -xf - -C "$SRC"
fi
find "$SRC/mobilevit" -name '_C*.so' -delete

# 2. sanitized in-place build in the copy (its own build dirs)
"$PY" -c "import numpy, setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 77)" \
    2>/dev/null || "$PY" -m pip install -q "setuptools>=77" wheel numpy   # pyproject's build requirements
t0=$(date +%s)
(cd "$SRC" && MOBILEVIT_SANITIZE=1 "$PY" setup.py -q build_ext --inplace \
    -b "$WORK/build/lib" -t "$WORK/build/tmp" >"$WORK/build.log" 2>&1) \
    || { tail -50 "$WORK/build.log"; echo "sanitize: build failed"; exit 1; }
echo "sanitize: built in $(( $(date +%s) - t0 ))s"
fi

ASAN_LIB=$(gcc -print-file-name=libasan.so)
UBSAN_LIB=$(gcc -print-file-name=libubsan.so)
[ -e "$ASAN_LIB" ] && [ -e "$UBSAN_LIB" ] || { echo "sanitize: libasan/libubsan not found"; exit 1; }

export PYTHONPATH="$SRC${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONMALLOC=malloc
# One third-party suppression: Ray's vendored setproctitle (spt_setup in ray/_raylet.so, run in the
# Ray worker processes of the README's Ray example, which inherit LD_PRELOAD) sometimes strcmp()s a
# keyword-argument name CPython has already freed; seen once in a clean-clone run on 2026-12-08 (the
# README block then timed out), not in the 15-test rerun.  Only reports whose interceptor was called
# from spt_setup are dropped; everything in our code, and every other Ray report, still halts.
printf 'interceptor_via_fun:spt_setup\n' > "$WORK/asan.supp"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1:verify_asan_link_order=0:detect_stack_use_after_return=0:suppressions=$WORK/asan.supp:log_path=$WORK/reports/asan"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:log_path=$WORK/reports/ubsan"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

# the sanitized build, not an installed copy, must be the one imported
(cd "$SRC" && LD_PRELOAD="$ASAN_LIB:$UBSAN_LIB" "$PY" -c "
import mobilevit._C as c
assert c.__file__.startswith('$SRC/'), c.__file__
print('sanitize: testing', c.__file__)
")

# 3. the tests, from the copy, with the runtimes preloaded into a stock CPython
t0=$(date +%s)
set +e
# RSS-flatness tests measure the allocator, and ASan's quarantine keeps freed memory resident on
# purpose (test_rss_flat_over_model_load_free_cycles reached ~1.9 GB): they are meaningless here.
(cd "$SRC" && LD_PRELOAD="$ASAN_LIB:$UBSAN_LIB" "$PY" -m pytest -q -p no:cacheprovider $TESTS \
    --deselect tests/test_hardening.py::test_rss_flat_over_model_load_free_cycles \
    --deselect tests/test_hardening.py::test_rss_flat_over_5000_calls ${SANITIZE_PYTEST_ARGS:-})
rc=$?
set -e
echo "sanitize: pytest rc=$rc in $(( $(date +%s) - t0 ))s"
reports=$(ls "$WORK/reports" 2>/dev/null | wc -l)
if [ "$reports" -ne 0 ]; then
    for f in "$WORK/reports"/*; do echo "== $f"; head -60 "$f"; done
    echo "sanitize: $reports sanitizer report(s)"
    exit 1
fi
exit $rc
