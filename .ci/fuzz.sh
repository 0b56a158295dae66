#!/usr/bin/env bash
# Bounded atheris fuzzing of the four harnesses in tests/fuzz/ on their seed corpora.
#
#   bash .ci/fuzz.sh                      # FUZZ_SECONDS=30 per target (about 2.5 min in all)
#   FUZZ_SECONDS=600 FUZZ_TARGETS="pickle c_api" bash .ci/fuzz.sh
#   FUZZ_SANITIZE_DIR=/tmp/mv-sanitize bash .ci/fuzz.sh   # c_api against the ASan/UBSan build
#                                                          # left by SANITIZE_KEEP=1 .ci/sanitize.sh
#
# Needs the package importable (the venv made by .ci/run, or PYTHONPATH) and installs atheris from
# PyPI if missing.  New corpus entries and crash reproducers go to FUZZ_OUT (default: a temp dir);
# the committed seeds in tests/fuzz/corpus/ are only read.  Exits non-zero on any crash, uncaught
# exception, timeout (-timeout=30 s per input) or RSS above 3 GiB; the reproducer path is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# the venv made by .ci/run unless one is active or PYTHON is set
if [ -z "${PYTHON:-}" ] && [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$ROOT/${VENV:-.ci-venv}/bin/python" ]; then
    PYTHON="$ROOT/${VENV:-.ci-venv}/bin/python"
fi
PY=${PYTHON:-python}
SECS=${FUZZ_SECONDS:-30}
TARGETS=${FUZZ_TARGETS:-"checkpoint pickle safetensors c_api"}
OUT=${FUZZ_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/mv-fuzz.XXXXXX")}
mkdir -p "$OUT"

if ! "$PY" -c "import atheris" 2>/dev/null; then
    "$PY" -m pip install -q atheris
fi

status=0
for t in $TARGETS; do
    mkdir -p "$OUT/$t"
    env=()
    if [ "$t" = c_api ] && [ -n "${FUZZ_SANITIZE_DIR:-}" ]; then
        # gcc's ASan runtime must come first; PYTHONMALLOC=malloc makes Python's heap visible to it.
        # Atheris gets no coverage from the preloaded runtime here: this is a blind but checked run.
        env=(PYTHONPATH="$FUZZ_SANITIZE_DIR" PYTHONMALLOC=malloc
             LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
             ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:verify_asan_link_order=0"
             UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    fi
    start=$(date +%s)
    set +e
    env "${env[@]}" "$PY" "tests/fuzz/fuzz_$t.py" "$OUT/$t" "tests/fuzz/corpus/$t" \
        -max_total_time="$SECS" -timeout=30 -rss_limit_mb=3072 \
        -artifact_prefix="$OUT/$t-" -print_final_stats=1 >"$OUT/$t.log" 2>&1
    rc=$?
    set -e
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$OUT/$t.log" | grep -o '[0-9]*$' || echo "?")
    echo "fuzz $t: rc=$rc executions=$runs time=$(( $(date +%s) - start ))s log=$OUT/$t.log"
    if [ $rc -ne 0 ]; then
        status=1
        grep -v '^INFO: Instrumenting' "$OUT/$t.log" | tail -40
        ls "$OUT/$t-"* 2>/dev/null | sed 's/^/reproducer: /' || true
    fi
done
[ $status -eq 0 ] && echo "fuzz: no crashes (corpus growth in $OUT)"
exit $status
