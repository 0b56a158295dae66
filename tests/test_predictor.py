"""Predictor and CLI (issue 4, items 4-5): one row per input, input order,
errors as rows, multi-scale buckets, streamed CSV/JSONL output, exit codes."""
import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

import mobilevit
from mobilevit.cli import expand_paths, main
from mobilevit.preprocess import Preprocess
from mobilevit.sampler import batch_size_for, nearest_scale


@pytest.fixture(scope="module")
def model():
    m = mobilevit.create_model("mobilevit_xxs", num_classes=7, seed=5)
    m.class_names = [f"c{i}" for i in range(7)]
    return m


def _images(tmp_path, sizes, bad=()):
    paths = []
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        p = tmp_path / f"img_{i:03d}.png"
        if i in bad:
            p.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        else:
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def test_rows_in_order_with_errors(tmp_path, model):
    paths = _images(tmp_path, [(60, 80)] * 11, bad={3, 7})
    paths.insert(5, str(tmp_path / "missing.png"))
    pred = mobilevit.Predictor(model, preset="hf", batch_size=4, top_k=3)
    rows = list(pred.predict(paths))
    assert [r["index"] for r in rows] == list(range(len(paths)))
    assert [r["path"] for r in rows] == paths
    errs = {r["index"] for r in rows if r["error"]}
    assert errs == {3, 5, 8}
    pre = Preprocess.from_name("hf")
    good = [i for i in range(len(paths)) if i not in errs]
    x = np.stack([pre(paths[i]) for i in good])
    logits = model(x)
    for k, i in enumerate(good):
        p = np.exp(logits[k] - logits[k].max())
        p /= p.sum()
        top = np.argsort(-p)[:3]
        assert rows[i]["class_ids"] == list(top)
        assert rows[i]["labels"][0] == f"c{top[0]}"
        np.testing.assert_allclose(rows[i]["scores"], p[top], rtol=1e-5)


def test_multi_scale_buckets(tmp_path, model):
    sizes = [(150, 160), (330, 300), (260, 250), (190, 200), (170, 150), (320, 330), (200, 190)] * 3
    paths = _images(tmp_path, sizes)
    pred = mobilevit.Predictor(model, preset="hf", batch_size=4, multi_scale=True, top_k=2)
    assert pred.scales == [(160, 160), (192, 192), (256, 256), (288, 288), (320, 320)]
    assert batch_size_for(320, 320, base_size=(256, 256), base_batch_size=4) == 2  # int(2.56)
    rows = list(pred.predict(paths))
    assert [r["index"] for r in rows] == list(range(len(paths)))
    pre = Preprocess.from_name("hf")
    for i, (h, w) in enumerate(sizes[:7]):
        s = nearest_scale(h, w, pred.scales)
        y = model(pre.resized(*s)(paths[i])[None])
        assert rows[i]["class_ids"][0] == int(np.argmax(y))


def test_many_inputs_memory_stays_bounded(model):
    """A bucket that rarely fills is flushed early, so results are not held back."""
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)] + \
           [rng.integers(0, 255, (330, 330, 3), dtype=np.uint8) for _ in range(60)]
    pred = mobilevit.Predictor(model, preset="hf", batch_size=2, multi_scale=True, num_workers=2)
    seen = 0
    for r in pred.predict(iter(imgs)):
        assert r["index"] == seen and r["error"] is None
        seen += 1
    assert seen == len(imgs)


def test_expand_paths(tmp_path):
    paths = _images(tmp_path, [(40, 40)] * 3)
    (tmp_path / "notes.txt").write_text("x")
    sub = tmp_path / "sub"
    sub.mkdir()
    Image.new("RGB", (40, 40)).save(sub / "z.jpg")
    got = list(expand_paths([str(tmp_path)]))
    assert got == paths + [str(sub / "z.jpg")]
    assert list(expand_paths([str(tmp_path / "img_00*.png")])) == paths
    assert list(expand_paths([str(tmp_path / "nomatch*.png")])) == [str(tmp_path / "nomatch*.png")]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_cli_predict_outputs(tmp_path, model, fmt, capsys):
    weights = model.save(str(tmp_path / "w"))
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    paths = _images(imgs, [(64, 64)] * 5, bad={2})
    out = tmp_path / f"preds.{fmt}"
    rc = main(["predict", str(imgs), "--weights", weights, "--top-k", "2", "--batch-size", "2",
               "--output", str(out), "--preset", "hf", "--threads", "1"])
    assert rc == 0
    if fmt == "jsonl":
        meta, *rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert meta["schema_version"] == mobilevit.predictor.SCHEMA_VERSION and meta["top_k"] == 2
        assert [r["path"] for r in rows] == paths
        assert rows[2]["error"] and not rows[0]["error"] and len(rows[0]["labels"]) == 2
    else:
        rows = list(csv.reader(out.open()))
        assert rows[0] == ["path", "label_1", "score_1", "class_id_1", "label_2", "score_2", "class_id_2", "error"]
        assert [r[0] for r in rows[1:]] == paths and rows[3][-1] and not rows[1][-1]
    assert "4 predicted, 1 failed" in capsys.readouterr().err


def test_cli_exit_code_when_nothing_works(tmp_path, model):
    weights = model.save(str(tmp_path / "w"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    assert main(["predict", str(bad), "--weights", weights]) == 1
    assert main(["predict", str(bad), "--weights", str(tmp_path / "nothing")]) == 2


def test_cli_segment_writes_palette_masks(tmp_path):
    m = mobilevit.create_model("deeplabv3_mobilevit_xxs", num_classes=4, seed=3)
    weights = m.save(str(tmp_path / "seg"))
    paths = _images(tmp_path, [(70, 90), (64, 64)], bad={1})
    out = tmp_path / "masks"
    assert main(["segment", *paths, "--weights", weights, "--output", str(out), "--overlay", "--preset", "hf"]) == 0
    mask = Image.open(out / "img_000_mask.png")
    assert mask.mode == "P" and mask.size == (90, 70)
    assert set(np.unique(np.asarray(mask))) <= set(range(4))
    assert (out / "img_000_overlay.png").exists() and not (out / "img_001_mask.png").exists()
    expected = m.segment(paths[0], preset="hf")
    np.testing.assert_array_equal(np.asarray(mask), expected)


def test_streaming_memory_stays_flat(model):
    """Rows are streamed: many inputs do not accumulate results or images."""
    rng = np.random.default_rng(5)
    base = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    pre = Preprocess.from_name("hf", resize_shortest=64, crop=64)
    pred = mobilevit.Predictor(model, preset=pre, batch_size=8, num_workers=2)

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20

    gen = (base for _ in range(1200))
    n, mid = 0, None
    for row in pred.predict(gen):
        assert row["index"] == n
        n += 1
        if n == 300:
            mid = rss()
    assert n == 1200
    assert rss() - mid < 16
