"""Batch prediction hardening (issue 12, items 4 and 5): nothing lost per input, strict
output, non-UTF-8 names, SIGINT/SIGTERM + --resume, thread counts checked, and memory
bounded on small hostile files / configs."""
import csv
import io
import json
import os
import resource
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image

import mobilevit
from mobilevit.cli import main
from mobilevit.predictor import MAX_THREADS, check_num_threads, display_name
from mobilevit.preprocess import Preprocess, PreprocessLimitError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = Preprocess.from_name("hf", resize_shortest=64, crop=64)


@pytest.fixture(scope="module")
def model():
    m = mobilevit.create_model("mobilevit_xxs", num_classes=5, seed=7)
    m.class_names = [f"c{i}" for i in range(5)]
    return m


@pytest.fixture(scope="module")
def weights(model, tmp_path_factory):
    return model.save(str(tmp_path_factory.mktemp("w") / "w"))


def _strict_loads(line):
    def no_constants(tok):
        raise ValueError(f"non-standard JSON token {tok}")
    row = json.loads(line, parse_constant=no_constants)
    json.dumps(row, ensure_ascii=False).encode("utf-8")   # no lone surrogates inside
    return row


def _png(path, h, w, seed=0):
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return os.fspath(path)


def _tiny_wide_png(h, w) -> bytes:
    """A ~100-byte PNG of h x w black pixels (compresses to almost nothing)."""
    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


# ------------------------------------------------------------------------ one bad member, one error row

def _top(model, x, k):
    logits = model(x[None])[0]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return list(np.argsort(-p, kind="stable")[:k])


def test_bad_members_get_their_own_error_rows(model, tmp_path):
    rng = np.random.default_rng(3)
    good = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    chw = SMALL(good)
    undecodable = tmp_path / "bad.png"
    undecodable.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    inputs = [
        good,                                        # 0 ok
        np.full((3, 64, 64), np.nan, np.float32),    # 1 NaN preprocessed array, same bucket as the good ones
        chw,                                         # 2 ok (preprocessed)
        np.array([object()] * 4).reshape(2, 2, 1),   # 3 object array
        str(undecodable),                            # 4 undecodable file
        np.full((48, 48, 3), np.inf),                # 5 non-finite float image
        np.zeros((3, 10, 10), np.float32),           # 6 too small for the network
        good,                                        # 7 ok
        np.full((3, 64, 64), np.inf, np.float32),    # 8 Inf preprocessed array
        chw,                                         # 9 ok
        np.zeros((3, 64, 64), np.uint8),             # 10 uint8 CHW (not an HWC image)
    ]
    pred = mobilevit.Predictor(model, preset=SMALL, batch_size=4, top_k=2, num_workers=1)
    rows = list(pred.predict(inputs))
    assert [r["index"] for r in rows] == list(range(len(inputs)))
    assert {r["index"] for r in rows if r["error"]} == {1, 3, 4, 5, 6, 8, 10}
    for i in (0, 2, 7, 9):
        assert rows[i]["labels"] and rows[i]["scores"], rows[i]
        assert rows[i]["class_ids"] == _top(model, chw, 2)
    assert "NaN or Inf" in rows[1]["error"] and "NaN or Inf" in rows[8]["error"]


class _FailsOnBatches:
    """A model whose batched call fails (e.g. over its memory limit) but single calls work."""

    def __init__(self, model):
        self.model, self.num_classes, self.calls = model, model.num_classes, []

    def __call__(self, x, num_threads=None):
        self.calls.append(len(x))
        if len(x) > 1:
            raise MemoryError("batch too large")
        return self.model(x, num_threads=num_threads)


def test_failed_batch_is_retried_member_by_member(model):
    imgs = [np.random.default_rng(i).integers(0, 255, (48, 48, 3), dtype=np.uint8) for i in range(5)]
    fake = _FailsOnBatches(model)
    rows = list(mobilevit.Predictor(fake, preset=SMALL, batch_size=4, top_k=1, num_workers=1,
                                    class_names=list("abcde")).predict(imgs))
    assert all(r["error"] is None and r["labels"] for r in rows), rows
    assert fake.calls == [4, 1, 1, 1, 1, 1]
    for r, img in zip(rows, imgs):
        assert r["class_ids"][0] == _top(model, SMALL(img), 1)[0]


def test_non_finite_logits_become_error_rows(model):
    good = SMALL(np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8))
    huge = np.full((3, 64, 64), 3e38, np.float32)      # finite input, logits overflow
    assert not np.isfinite(model(huge[None])).all()
    rows = mobilevit.Predictor(model, preset=SMALL, batch_size=3, num_workers=1)([good, huge, good])
    assert [r["error"] for r in rows] == [None, "non-finite logits", None]
    assert rows[1]["labels"] == rows[1]["scores"] == rows[1]["class_ids"] == []
    for r in rows:
        _strict_loads(json.dumps(r, allow_nan=False))


def test_jsonl_writer_lines_are_strict_json(tmp_path):
    from mobilevit.cli import _Writer
    out = tmp_path / "o.jsonl"
    w = _Writer(str(out), 1)
    w.write({"index": 0, "path": "a.png", "labels": ["x"], "scores": [0.5], "class_ids": [0], "error": None})
    w.write({"index": 1, "path": "b.png", "labels": ["x"], "scores": [float("nan")], "class_ids": [0],
             "error": None})
    w.close()
    meta, *rows = [_strict_loads(line) for line in out.read_text("utf-8").splitlines()]
    assert meta["schema_version"] == mobilevit.predictor.SCHEMA_VERSION
    assert [r["path"] for r in rows] == ["a.png", "b.png"]
    assert rows[1]["error"] and rows[1]["labels"] == rows[1]["scores"] == []


# ------------------------------------------------------------------------ names that are not UTF-8

@pytest.mark.parametrize("fmt", ["jsonl", "csv", "stdout"])
def test_non_utf8_file_names(tmp_path, weights, fmt, capfd):
    d = tmp_path / "imgs"
    d.mkdir()
    raw = [b"caf\xe9.png", b"ok.png", b"\xff\xfe.png"]
    for i, n in enumerate(raw):
        _png(os.path.join(os.fsencode(d), n), 40, 40, seed=i)
    names = sorted(os.listdir(d))                       # str, surrogate-escaped
    expected = [display_name(os.path.join(str(d), n)) for n in names]
    assert os.path.join(str(d), "caf\\xe9.png") in expected
    argv = ["predict", str(d), "--weights", weights, "--top-k", "1", "--preset", "hf", "--no-progress"]
    out = tmp_path / f"o.{fmt}"
    if fmt != "stdout":
        argv += ["--output", str(out)]
    assert main(argv) == 0
    if fmt == "jsonl":
        got = [_strict_loads(line)["path"] for line in out.read_text("utf-8").splitlines()[1:]]
    elif fmt == "csv":
        got = [r[0] for r in list(csv.reader(out.open(encoding="utf-8", newline="")))[1:]]
    else:
        got = [line.split("\t")[0] for line in capfd.readouterr().out.splitlines()]
    assert got == expected


def test_non_utf8_names_through_predictor_and_arrow(model, tmp_path):
    p = _png(os.path.join(os.fsencode(tmp_path), b"x\xe9.png"), 40, 40)
    as_str = os.fsdecode(p)
    rows = mobilevit.Predictor(model, preset=SMALL, num_workers=1)([as_str])
    assert rows[0]["error"] is None and rows[0]["path"] == display_name(as_str)
    assert rows[0]["path"].endswith("x\\xe9.png")
    from mobilevit.dask import columns_to_arrow, rows_to_columns
    table = columns_to_arrow(rows_to_columns([as_str], rows))   # Arrow strings must be UTF-8
    assert table.column("path").to_pylist() == [rows[0]["path"]]
    assert display_name(b"caf\xe9") == "caf\\xe9" == display_name("caf\udce9")
    assert display_name("plain é.png") == "plain é.png"


# ------------------------------------------------------------------------ SIGINT / SIGTERM and --resume

def _rows(path):
    if path.endswith(".jsonl"):
        meta, *rows = open(path, encoding="utf-8").read().splitlines()
        assert _strict_loads(meta)["schema_version"] == mobilevit.predictor.SCHEMA_VERSION
        return [_strict_loads(line)["path"] for line in rows]
    recs = list(csv.reader(open(path, encoding="utf-8", newline="")))
    assert recs[0][0] == "path"
    return [r[0] for r in recs[1:]]


def _run_cli(args, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "mobilevit", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture(scope="module")
def many_images(tmp_path_factory):
    d = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(0)
    for i in range(400):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(d / f"{i:04d}.png")
    return str(d)


@pytest.mark.parametrize("sig,fmt", [(signal.SIGINT, "jsonl"), (signal.SIGTERM, "csv")])
def test_interrupt_then_resume_gives_each_input_once(tmp_path, weights, many_images, sig, fmt):
    out = str(tmp_path / f"preds.{fmt}")
    args = ["predict", many_images, "--weights", weights, "--preset", "hf", "--batch-size", "1", "--threads", "1",
            "--top-k", "2", "--no-progress", "--output", out]
    proc = _run_cli(args)
    deadline = time.time() + 60
    while time.time() < deadline:           # wait until some rows are out, then interrupt
        if os.path.exists(out) and os.path.getsize(out) > 2000:
            break
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("mobilevit predict: model ")   # the header line, then:
    lines = lines[1:]
    assert ("SIGINT" if sig == signal.SIGINT else "SIGTERM") in lines[0] and out in lines[0]
    first = _rows(out)
    expected = [os.path.join(many_images, f"{i:04d}.png") for i in range(400)]
    assert 0 < len(first) < 400, "the run was not interrupted mid-way"
    assert first == expected[:len(first)]   # complete up to the last row
    assert f"after {len(first)} rows" in lines[0]
    proc = _run_cli(args + ["--resume"])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"{400 - len(first)} predicted" in err and f"{len(first)} already in the output" in err
    assert sorted(_rows(out)) == expected


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_resume_drops_a_cut_last_row(tmp_path, weights, fmt):
    paths = [_png(tmp_path / f"i{i}.png", 40, 40, seed=i) for i in range(5)]
    paths[1] = _png(tmp_path / 'we"ird,\nname\r.png', 40, 40, seed=9)   # CSV quoting across lines
    paths.insert(2, str(tmp_path / "missing.png"))
    out = str(tmp_path / f"o.{fmt}")
    base = ["predict", *paths, "--weights", weights, "--preset", "hf", "--top-k", "2", "--output", out]
    assert main(base[:2] + base[7:]) == 0       # the first input
    one = open(out, "rb").read()
    assert main(base[:3] + base[7:]) == 0       # the first two
    raw = open(out, "rb").read()
    second = raw[len(one):]                     # the row of the odd name (spans two lines in CSV)
    assert raw.startswith(one) and second.endswith(b"\n")
    from mobilevit.cli import read_existing
    for cut in range(len(second)):              # a cut anywhere in the second row: only the first row counts
        with open(out, "wb") as f:
            f.write(one + second[:cut])
        done, keep, _ = read_existing(out, fmt, 2)
        assert (dict(done), keep) == ({display_name(paths[0]): 1}, len(one)), cut
    with open(out, "wb") as f:                  # the first row, then the second cut short, as a killed run leaves it
        f.write(one + second[:-4])
    assert main(base + ["--resume"]) == 0
    got = _rows(out)
    assert got == paths                         # one row per input, in order: the cut row dropped and redone
    assert open(out, "rb").read().endswith(b"\n")


def test_resume_refuses_a_csv_with_other_columns(tmp_path, weights, capsys):
    p = _png(tmp_path / "a.png", 40, 40)
    out = str(tmp_path / "o.csv")
    assert main(["predict", p, "--weights", weights, "--top-k", "2", "--output", out]) == 0
    before = open(out, "rb").read()
    assert main(["predict", p, "--weights", weights, "--top-k", "3", "--output", out, "--resume"]) == 2
    assert "header" in capsys.readouterr().err and open(out, "rb").read() == before
    assert main(["predict", p, "--weights", weights, "--resume"]) == 2          # nothing to resume


# ------------------------------------------------------------------------ thread counts

BAD_THREADS = [0, -1, -(2 ** 40), 10 ** 6, MAX_THREADS + 1, 2.5, 4.0, "4", True]


@pytest.mark.parametrize("n", BAD_THREADS)
def test_predictor_refuses_bad_num_threads(model, n):
    with pytest.raises(ValueError, match=r"between 1 and 1024"):
        mobilevit.Predictor(model, num_threads=n)


def test_thread_rule_matches_set_num_threads(model):
    assert check_num_threads(1) == 1 and check_num_threads(np.int64(MAX_THREADS)) == MAX_THREADS
    assert mobilevit.Predictor(model, num_threads=None).num_threads is None
    for n in (0, -1, MAX_THREADS + 1):          # the C rule (csrc/module.c py_set_num_threads)
        with pytest.raises(ValueError):
            mobilevit.set_num_threads(n)


@pytest.mark.parametrize("value", ["0", "-3", "1000000", "2.5", "many", "1025"])
def test_cli_threads_is_checked_by_argparse(value, capsys):
    with pytest.raises(SystemExit) as e:
        main(["predict", "x.png", f"--threads={value}"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mobilevit predict: error: argument --threads:") and value in err[-1]
    assert "between 1 and 1024" in err[-1]


def test_cluster_adapters_refuse_bad_thread_counts(model):
    pytest.importorskip("dask.dataframe")
    import mobilevit.dask as mdask
    with pytest.raises(ValueError, match="threads_per_worker"):
        mdask.predict(["a.png"], model=model, threads_per_worker=10 ** 6)
    from mobilevit.ray import MobileViTPredictor
    with pytest.raises(ValueError, match="num_threads"):
        MobileViTPredictor(model=model, num_threads=0)


# ------------------------------------------------------------------------ bounded memory

def _peak(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("preset", ["hf", "timm", "cvnets"])
@pytest.mark.parametrize("hw", [(1, 20000), (20000, 1), (3, 40000)])
def test_extreme_aspect_ratio_refused_up_front(preset, hw):
    data = _tiny_wide_png(*hw)
    assert len(data) < 200
    pre = Preprocess.from_name(preset)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(PreprocessLimitError) as e:
        pre(data)
    th, tw = pre.resize_target(*hw)
    msg = str(e.value)
    assert f"{th}x{tw}" in msg and "GiB" in msg and "limit is 1.0 GiB" in msg
    peak = _peak(lambda: pytest.raises(PreprocessLimitError, pre, data))
    assert peak < 4 * 2 ** 20
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 64 * 1024     # KiB


@pytest.mark.parametrize("make, field", [
    (lambda: Preprocess.from_hf_config({"size": {"shortest_edge": 10 ** 6}}), "resize_shortest"),
    (lambda: Preprocess.from_hf_config({"size": 10 ** 6}), "resize_shortest"),
    (lambda: Preprocess.from_hf_config({"size": {"height": 10 ** 6, "width": 10 ** 6}}), "resize_size"),
    (lambda: Preprocess.from_hf_config({"crop_size": {"height": 10 ** 6, "width": 10 ** 6}}), "crop"),
    (lambda: Preprocess.from_hf_config({"do_resize": False, "crop_size": {"height": 10 ** 6, "width": 10 ** 6}}),
     "crop"),
    (lambda: Preprocess.from_timm_cfg({"input_size": (3, 10 ** 6, 10 ** 6)}), "crop"),
    (lambda: Preprocess.from_timm_cfg({"input_size": (3, 10 ** 6, 10 ** 6), "crop_mode": "squash"}), "crop"),
    (lambda: Preprocess.from_timm_cfg({"input_size": (3, 224, 224), "crop_pct": 1e-4}), "resize_shortest"),
    (lambda: Preprocess(crop=10 ** 6), "crop"),
    (lambda: Preprocess(resize_shortest=10 ** 6), "resize_shortest"),
    (lambda: Preprocess(resize_shortest=None, resize_size=(10 ** 6, 300)), "resize_size"),
    (lambda: Preprocess.from_name("cvnets").replace(crop=None, resize_shortest=10 ** 5), "resize_shortest"),
    (lambda: Preprocess.from_name("hf").resized(10 ** 6, 10 ** 6), "crop"),
])
def test_huge_config_values_refused_when_built(make, field):
    peak = 0
    with pytest.raises(PreprocessLimitError, match=rf"{field}=.*per image.*limit is") as e:
        peak = _peak(make)
    assert "TiB" in str(e.value) or "GiB" in str(e.value)
    assert peak < 2 ** 20


def test_memory_estimate_bounds_what_is_allocated():
    """The estimate is an upper bound of the NumPy buffers (Pillow's own, untraced, are in it
    as 4 bytes per pixel) and normal photos stay far below the limit."""
    rng = np.random.default_rng(1)
    for h, w in [(480, 640), (100, 3000), (3000, 100), (37, 41), (20, 2000)]:
        img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        for pre in [Preprocess.from_name(n) for n in ("hf", "timm", "cvnets")] + \
                   [Preprocess.from_name("hf", crop=None), Preprocess.from_name("cvnets", crop=None),
                    Preprocess.from_name("timm", crop=400)]:
            peak = _peak(lambda: pre(img))
            est = pre.memory_estimate(h, w)
            assert peak <= est, (pre, h, w, peak, est)
    assert Preprocess.from_name("cvnets").memory_estimate(3000, 4000) < 64 * 2 ** 20
    assert Preprocess.from_name("hf").memory_estimate(6000, 8000) < 32 * 2 ** 20


def test_memory_limit_is_settable():
    from mobilevit import preprocess as pp
    data = _tiny_wide_png(1, 4000)                # 288 x 1152000 on the hf preset: ~3 GiB
    old = pp.get_memory_limit()
    hf = Preprocess.from_name("hf")
    try:
        pp.set_memory_limit(2 ** 20)
        with pytest.raises(PreprocessLimitError, match=r"40x60 \(h x w\) image.*limit is 1.0 MiB per image"):
            hf(_tiny_wide_png(40, 60))
        with pytest.raises(PreprocessLimitError, match="resize_shortest=288"):
            Preprocess.from_name("hf")
        pp.set_memory_limit(None)
        assert Preprocess(crop=10 ** 6).crop == (10 ** 6, 10 ** 6)   # no limit: built
    finally:
        pp.set_memory_limit(old)
    with pytest.raises(PreprocessLimitError):
        Preprocess.from_name("hf")(data)
    with pytest.raises(ValueError):
        pp.set_memory_limit(0)


def test_hostile_files_are_error_rows_in_predictor_and_cli(model, weights, tmp_path, capsys):
    good = [_png(tmp_path / f"g{i}.png", 40, 40, seed=i) for i in range(3)]
    wide, tall = tmp_path / "wide.png", tmp_path / "tall.png"
    wide.write_bytes(_tiny_wide_png(1, 20000))
    tall.write_bytes(_tiny_wide_png(20000, 1))
    inputs = [good[0], str(wide), good[1], str(tall), good[2]]
    for multi_scale in (False, True):
        pred = mobilevit.Predictor(model, preset="hf", batch_size=2, multi_scale=multi_scale, num_workers=2)
        peak = _peak(lambda: pred(inputs))
        rows = pred(inputs)
        assert [bool(r["error"]) for r in rows] == [False, True, False, True, False]
        assert rows[1]["error"].startswith(f"PreprocessLimitError: {wide}: 1x20000 (h x w) image, resize to ")
        assert "would need" in rows[1]["error"] and "limit is" in rows[3]["error"]
        assert peak < 64 * 2 ** 20
    out = str(tmp_path / "o.jsonl")
    assert main(["predict", *inputs, "--weights", weights, "--preset", "hf", "--output", out]) == 0
    rows = [_strict_loads(line) for line in open(out, encoding="utf-8")][1:]     # after the metadata line
    assert [r["path"] for r in rows] == inputs and [bool(r["error"]) for r in rows] == [0, 1, 0, 1, 0]
    assert "3 predicted, 2 failed" in capsys.readouterr().err


def test_cli_refuses_a_checkpoint_preprocessing_no_image_fits(tmp_path, capsys):
    m = mobilevit.create_model("mobilevit_xxs", num_classes=3, seed=1)
    m.pretrained_cfg["preprocess"] = {"resize_shortest": 288, "crop": [10 ** 6, 10 ** 6]}
    weights = m.save(str(tmp_path / "w"))
    p = _png(tmp_path / "a.png", 40, 40)
    assert main(["predict", p, "--weights", weights, "--output", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "crop=(1000000, 1000000)" in err[0] and "limit is" in err[0]
