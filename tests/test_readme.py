"""The README's code blocks run as written (issue 16).

Every ```python and ```bash block of README.md is run, in order, in one empty folder, each in
its own process (python blocks with this interpreter, bash blocks with ``mobilevit`` on PATH
running this source tree), with the environment of a 2-core machine: nothing in a block is
substituted.  A block may be skipped only with an explicit ``<!-- not-run: reason -->`` line
right before it, and only a few are.  Blocks that claim something in their output are checked
against it (the parity blocks print a real difference of logits of normal scale, the CLI writes
schema-2 files, ...).  Blocks that need a cluster start local ones sized for 2 cores; they are
skipped when dask / ray are not installed."""
import csv
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
FENCE = re.compile(r"(?:^<!--\s*not-run:\s*(?P<reason>[^>]*?)\s*-->\n)?^```(?P<lang>[\w-]*)\n(?P<code>.*?)^```\s*$",
                   re.M | re.S)
MAX_NOT_RUN = 3


def readme_blocks(text):
    """(language, code, not-run reason or None) of each fenced block, in order."""
    return [(m["lang"], m["code"], m["reason"]) for m in FENCE.finditer(text)]


BLOCKS = readme_blocks(open(README, encoding="utf-8").read())
RUN = [(i, lang, code) for i, (lang, code, reason) in enumerate(BLOCKS) if reason is None]


def test_blocks_are_parsed_and_few_are_skipped():
    assert len(BLOCKS) == open(README, encoding="utf-8").read().count("\n```") // 2 + (
        open(README, encoding="utf-8").read().startswith("```"))
    skipped = [(lang, reason) for lang, _, reason in BLOCKS if reason is not None]
    assert len(skipped) <= MAX_NOT_RUN, skipped
    assert all(reason.strip() for _, reason in skipped), "a not-run marker needs its reason"
    langs = {lang for lang, _, reason in BLOCKS if reason is None}
    assert langs <= {"python", "bash"}, f"blocks in a language the test cannot run: {langs}"
    assert sum(lang == "python" for _, lang, _ in RUN) >= 6 and any(lang == "bash" for _, lang, _ in RUN)


def test_the_block_parser_sees_markers():
    text = "a\n<!-- not-run: needs network -->\n```bash\nx\n```\n\n```python\ny = 1\n```\n"
    assert readme_blocks(text) == [("bash", "x\n", "needs network"), ("python", "y = 1\n", None)]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("readme")
    bindir = d / ".bin"
    bindir.mkdir()
    shim = bindir / "mobilevit"           # the console script `pip install` would make, for this tree
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mobilevit "$@"\n')
    shim.chmod(0o755)
    work = d / "work"
    work.mkdir()
    env = dict(os.environ)
    env.update(PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""), PATH=f"{bindir}{os.pathsep}{env['PATH']}",
               OMP_NUM_THREADS="2", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0",
               PYTHONWARNINGS="ignore", TQDM_DISABLE="1")
    env.pop("MPLBACKEND", None)
    return {"dir": str(work), "env": env, "failed": []}


def _needs(code):
    for mod, word in (("distributed", "mobilevit.dask"), ("ray", "import ray"), ("transformers", "transformers"),
                      ("timm", "import timm"), ("torch", "torch")):
        if word in code:
            pytest.importorskip(mod)


CHECKS = {}


def check(marker):
    """Register an output check for the block containing ``marker``."""
    def deco(fn):
        CHECKS[marker] = fn
        return fn
    return deco


@check("row = mobilevit.predict(\"images/digit_3")
def _front_door(out, err, wd):
    first, *rest = out.splitlines()
    label, score, cid = first.rsplit(" ", 2)
    assert label == "digit 3" and float(score) > 0.5 and cid == "3", first
    assert len(rest) == 3 and rest[0].split()[2:4] == ["['digit", "7',"] and rest[1].split()[2:4] == ["['digit", "7',"]
    assert "nope.png" in rest[2] and "not found" in rest[2].lower() or "No such file" in rest[2], rest[2]


@check("model.summary()")
def _summary(out, err, wd):
    lines = out.splitlines()
    assert lines[0].startswith("MobileViT(") and lines[0].endswith(")")
    assert "stages.4" in out and "final_conv" in out and "isa" in out
    with open(os.path.join(wd, "digit_5.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@check("mobilevit predict --top-k 2")
def _cli(out, err, wd):
    assert out.splitlines()[0].startswith("samples/digit_0_idx12.png\tdigit 0 (")
    assert "mobilevit predict: model mobilevit_xxs" in err.splitlines()[0]
    meta, *rows = [json.loads(line) for line in open(os.path.join(wd, "preds.jsonl"), encoding="utf-8")]
    assert meta["schema_version"] == 2 and meta["model"] == "mobilevit_xxs" and len(rows) == 10
    assert all(r["labels"][0] == f"digit {r['class_ids'][0]}" for r in rows)
    for name, n in (("preds.csv", 5), ("preds.txt", 10)):
        recs = list(csv.reader(open(os.path.join(wd, name), encoding="utf-8", newline="")))
        assert recs[0][:4] == ["path", "label_1", "score_1", "class_id_1"] and len(recs) == n + 1, name
    assert "mobilevit_xxs" in out and "deeplabv3_mobilevit_s" in out


def _numbers(out, key):
    return [float(m) for m in re.findall(rf"{key} ([-+0-9.e]+)", out)]


@check("MobileViTForImageClassification")
def _hf(out, err, wd):
    (std,), (diff,) = _numbers(out, "logits std"), _numbers(out, "max abs diff")
    assert std > 0.5 and diff < 1e-4 * max(1.0, std), out     # a real comparison, and a close one
    assert "same top-5: True" in out


@check("timm.create_model(\"mobilevitv2_050\")")
def _timm(out, err, wd):
    (std,), (diff,) = _numbers(out, "logits std"), _numbers(out, "max abs diff")
    assert std > 0.05 and diff < 1e-4 * max(1.0, std), out


@check("deeplabv3_mobilevit_xxs")
def _segment(out, err, wd):
    lines = out.splitlines()
    assert lines[0].startswith("(64, 64) [") and len(lines) == 11
    assert all(line.startswith("images/digit_") and " digit " in line for line in lines[1:])


@check("the OS-8 recipe is inferred")
def _recipe(out, err, wd):
    first, note, last = out.splitlines()
    assert "output_stride=8 [assumed]" in first and "aspp_channels=512 [file]" in first, first
    assert "pascal_voc/deeplabv3_mobilevit.yaml" in note and last == "16", (note, last)


@check("mobilevit.dask.predict")
def _dask(out, err, wd):
    assert os.listdir(os.path.join(wd, "predictions_dask")) and "labels" in out


@check("mobilevit.ray.predict")
def _ray(out, err, wd):
    assert os.listdir(os.path.join(wd, "predictions_ray")) and "digit" in out.splitlines()[-1]


def test_every_check_matches_a_block():
    for marker in CHECKS:
        assert sum(marker in code for _, _, code in RUN) == 1, marker


@pytest.mark.parametrize("index,lang,code", RUN, ids=[f"block{i}-{lang}" for i, lang, _ in RUN])
def test_readme_block_runs(workdir, index, lang, code):
    if workdir["failed"]:
        pytest.fail(f"an earlier README block failed ({workdir['failed']}); later blocks use its files")
    _needs(code)
    if lang == "python":
        script = os.path.join(workdir["dir"], f"_readme_block{index}.py")
        with open(script, "w", encoding="utf-8") as f:
            f.write(code)
        cmd = [sys.executable, script]
    else:
        cmd = ["bash", "-e", "-o", "pipefail", "-c", code]
    try:
        p = subprocess.run(cmd, cwd=workdir["dir"], env=workdir["env"], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as e:
        workdir["failed"].append(index)
        pytest.fail(f"README block {index} ({lang}) did not finish in 300 s:\n{code}\n{e.stdout}\n{e.stderr}")
    if p.returncode != 0:
        workdir["failed"].append(index)
        pytest.fail(f"README block {index} ({lang}) exited {p.returncode}:\n{code}\n--- stdout\n{p.stdout}"
                    f"\n--- stderr\n{p.stderr[-4000:]}")
    assert "Traceback" not in p.stderr, p.stderr[-4000:]
    for marker, fn in CHECKS.items():
        if marker in code:
            fn(p.stdout, p.stderr, workdir["dir"])
