"""Smoke test of an INSTALLED mobilevit (a wheel in a fresh venv): the console
script predicts the bundled sample digits correctly, `mobilevit info` runs,
every kernel path this CPU has agrees with the scalar reference, and 1 and 2
threads give the same bits.  Needs only the package's own dependencies
(numpy, Pillow, tqdm); run it from a folder that is not the source tree.

Used by .ci/wheel.sh and by cibuildwheel's test-command (pyproject.toml).
    python .ci/wheel_smoke.py            # exit 0 when everything holds
"""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np

import mobilevit


def fail(msg):
    print(f"wheel_smoke: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    here = os.path.dirname(os.path.abspath(mobilevit.__file__))
    print(f"wheel_smoke: mobilevit {mobilevit.__version__} from {here}")
    if os.path.isdir(os.path.join(os.path.dirname(here), "csrc")):
        fail(f"{here} is a source tree, not an installed package")
    info = mobilevit.build_info()
    print(f"wheel_smoke: build_info {info}")

    exe = shutil.which("mobilevit")
    if not exe:
        fail("the `mobilevit` console script is not on PATH")
    r = subprocess.run([exe, "info"], capture_output=True, text=True)
    if r.returncode != 0 or "OpenMP: " not in r.stdout:
        fail(f"`mobilevit info` rc={r.returncode}: {r.stdout}{r.stderr}")
    r = subprocess.run([exe, "predict", "--top-k", "1", "--format", "jsonl", "--no-progress"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"`mobilevit predict` rc={r.returncode}: {r.stderr}")
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    rows = [x for x in rows if "labels" in x]          # the first line is the metadata line
    if len(rows) != 10:
        fail(f"`mobilevit predict` gave {len(rows)} rows for the 10 bundled samples")
    for row in rows:
        digit = re.search(r"digit_(\d)_", row["path"]).group(1)
        if row["error"] is not None or row["labels"] != [f"digit {digit}"]:
            fail(f"sample {row['path']}: {row}")
    print(f"wheel_smoke: mobilevit predict: 10/10 sample digits right")

    from mobilevit.default import load_default_model
    model = load_default_model()
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    mobilevit.set_isa("ref")
    ref = model(x, num_threads=1)
    for isa in mobilevit.available_isas():
        mobilevit.set_isa(isa)
        one, two = model(x, num_threads=1), model(x, num_threads=2)
        if not np.array_equal(one, two):
            fail(f"isa {isa}: 1 and 2 threads differ")
        err = float(np.abs(one - ref).max())
        if not err <= 1e-4 or not (one.argmax(1) == ref.argmax(1)).all():
            fail(f"isa {isa}: max |diff| to the reference {err:.2e}")
        print(f"wheel_smoke: isa {isa}: max |diff| to ref {err:.1e}, 1 vs 2 threads bit-identical")
    mobilevit.set_isa("auto")
    print("wheel_smoke: passed")


if __name__ == "__main__":
    main()
