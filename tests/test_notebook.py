"""The front door and the notebook displays (issue 16): ``mobilevit.predict`` / ``model.predict``
for every input class (path, bytes, PIL, uint8 HWC, lists of them) with the checkpoint's
preprocessing; single inputs are one input (never iterated); prediction and segmentation
pictures drawn with Pillow reflect the numbers; ``model.summary()`` adds up and matches the
network's real shapes; error rows of bytes inputs name their path."""
import io
import os

import numpy as np
import pytest
from PIL import Image

import mobilevit
from mobilevit import notebook
from mobilevit.default import sample_images
from mobilevit.predictor import ROW_FIELDS, Prediction, input_hint

BLUE = (31, 119, 180)


@pytest.fixture(scope="module")
def digits():
    return mobilevit.default.load_default_model()


def _forms(path):
    img = Image.open(path)
    img.load()
    return {"path": path, "pathlike": __import__("pathlib").Path(path), "bytes": open(path, "rb").read(),
            "pil": img, "pil_rgb": img.convert("RGB"), "uint8_hwc": np.asarray(img.convert("RGB"))}


@pytest.mark.parametrize("path", sample_images()[::3])
def test_every_input_form_gives_the_predictor_answer(digits, path):
    ref = next(mobilevit.Predictor(digits, top_k=3).predict([path]))
    for kind, x in _forms(path).items():
        row = mobilevit.predict(x, model=digits, top_k=3)
        assert isinstance(row, Prediction), kind
        assert row["class_ids"] == ref["class_ids"] and np.allclose(row["scores"], ref["scores"]), kind
        assert row["labels"] == ref["labels"] and row["error"] is None
        assert row["path"] == (os.fspath(x) if kind in ("path", "pathlike") else None), kind
        assert row.image is not None and row.image.size == (64, 64)
        assert digits.predict(x, top_k=3)["class_ids"] == ref["class_ids"]


def test_default_model_and_lists_keep_order():
    paths = sample_images()
    mixed = [paths[0], Image.open(paths[1]), "no/such/file.png", np.asarray(Image.open(paths[2]).convert("RGB"))]
    rows = mobilevit.predict(mixed, top_k=2)
    assert isinstance(rows, list) and [r["index"] for r in rows] == [0, 1, 2, 3]
    assert [r["labels"][0] for r in rows if not r["error"]] == ["digit 0", "digit 1", "digit 2"]
    assert rows[2]["error"] and "file.png" in rows[2]["error"] and rows[2]["labels"] == []
    assert all(set(r) == {"index", *ROW_FIELDS} for r in rows)
    assert mobilevit.predict([]) == []


@pytest.mark.parametrize("single", ["photo.png", b"not an image", os.path.join("a", "b.png")])
def test_predictor_takes_one_path_or_bytes_as_one_input(digits, single):
    rows = list(mobilevit.Predictor(digits).predict(single))
    assert len(rows) == 1 and rows[0]["error"]          # missing / undecodable: one error row, not one per char


def test_predictor_takes_one_image_as_one_input(digits):
    img = Image.open(sample_images()[4])
    for x in (img, np.asarray(img.convert("RGB")), np.asarray(img.convert("L"))):
        rows = list(mobilevit.Predictor(digits).predict(x))
        assert len(rows) == 1 and rows[0]["error"] is None and rows[0]["labels"][0] == "digit 4"


def test_names_label_rows_and_bytes_errors(digits):
    data = [open(sample_images()[0], "rb").read(), b"\x89PNG\r\n\x1a\n broken"]
    rows = list(mobilevit.Predictor(digits).predict(data, names=["s/zero.png", "s/broken.png"]))
    assert [r["path"] for r in rows] == ["s/zero.png", "s/broken.png"]
    assert rows[0]["error"] is None and "s/broken.png" in rows[1]["error"] and "bytes>" not in rows[1]["error"]
    with pytest.raises(ValueError, match="names"):
        list(mobilevit.Predictor(digits).predict(data, names=["only one"]))


def test_ray_error_rows_name_the_path(tmp_path, digits):
    pytest.importorskip("pyarrow")
    from mobilevit.ray import MobileViTPredictor
    p = MobileViTPredictor(model=digits, top_k=1, num_threads=1)
    good = open(sample_images()[3], "rb").read()
    batch = {"bytes": np.array([good, b"garbage"], dtype=object), "path": np.array(["d/3.png", "d/bad.png"])}
    t = p(batch)
    assert t.column("path").to_pylist() == ["d/3.png", "d/bad.png"]
    err = t.column("error").to_pylist()
    assert err[0] is None and "d/bad.png" in err[1] and "bytes>" not in err[1]
    assert t.column("class_ids").to_pylist()[0] == [3]


def _bar_widths(png, colour):
    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    rows = np.all(a == colour, axis=2)
    return rows.sum(axis=1).max() if rows.any() else 0


@pytest.mark.parametrize("scores", [[0.9, 0.1], [0.5, 0.3, 0.2], [0.25, 0.25], [1.0]])
def test_prediction_picture_bars_follow_scores(scores):
    row = Prediction(index=0, path=None, labels=[f"c{i}" for i in range(len(scores))], scores=scores,
                     class_ids=list(range(len(scores))), error=None)
    png = row._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width = _bar_widths(png, BLUE)                      # the top-1 bar
    assert abs(width - (round(notebook.BAR_W * scores[0]) + 1)) <= 1, (width, scores)
    html = row._repr_html_()
    assert html.startswith("<img src=\"data:image/png;base64,") and f"c0 ({scores[0]:.1%})" in html


def test_error_row_picture_says_error():
    row = Prediction(index=3, path="x.png", labels=[], scores=[], class_ids=[], error="ImageLoadError: bad")
    a = np.asarray(Image.open(io.BytesIO(row._repr_png_())).convert("RGB"))
    red = (a[..., 0] > 120) & (a[..., 1] < 80) & (a[..., 2] < 80)      # the message is drawn in red
    assert red.sum() > 50 and "error: ImageLoadError" in row._repr_html_()
    assert _bar_widths(row._repr_png_(), BLUE) == 0


def test_rows_from_paths_display_their_image(digits):
    row = next(mobilevit.Predictor(digits).predict([sample_images()[0]]))
    assert row.image is None
    a = np.asarray(Image.open(io.BytesIO(row._repr_png_())).convert("RGB"))
    thumb = a[8:8 + notebook.THUMB, 8:8 + notebook.THUMB]
    assert thumb.std() > 10                              # the digit is drawn, not a grey box


def test_segmentation_picture_is_the_mask_over_the_image():
    m = mobilevit.create_model("deeplabv3_mobilevit_xxs", num_classes=5, seed=4)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 260, 3), dtype=np.uint8))
    seg = m.predict(img)
    assert isinstance(seg, mobilevit.predictor.Segmentation) and seg.mask.shape == (300, 260)
    np.testing.assert_array_equal(seg.mask, m.segment(img))
    areas = seg.areas()
    assert abs(sum(areas.values()) - 1) < 1e-9 and list(areas.values()) == sorted(areas.values(), reverse=True)
    pic = notebook.segmentation_image(seg)
    view = np.asarray(pic.convert("RGB"))[8:8 + 300, 8:8 + 260].astype(int)
    pal = np.array(notebook.palette()).reshape(256, 3)
    expected = (np.asarray(img).astype(int) + pal[seg.mask]) / 2
    assert np.abs(view - expected).max() <= 1          # Image.blend at 0.5, pixel for pixel
    assert seg._repr_html_().startswith("<img ") and seg._repr_png_()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name,kw", [("mobilevit_xxs", {}), ("mobilevitv2_050", {}),
                                     ("deeplabv3_mobilevit_xxs", {"num_classes": 3}),
                                     ("mobilevit_xs", {"num_classes": 0}),
                                     ("mobilevitv2_075", {"features_only": True})])
@pytest.mark.parametrize("size", [(256, 256), (160, 96), (97, 131)])
def test_summary_adds_up_and_matches_the_network(name, kw, size):
    m = mobilevit.create_model(name, **kw)
    s = m.summary(size)
    assert sum(int(r[4].replace(",", "")) for r in s.rows) == m.num_parameters()
    x = np.zeros((1, 3) + size, np.float32)
    shapes = [f.shape[1:] for f in m.forward_features(x)]
    got = {r[0]: r[2] for r in s.rows}
    for i, shp in enumerate(shapes):
        assert got[f"stages.{i}"] == " x ".join(map(str, shp)), (i, got)
    text = str(s)
    assert text.splitlines()[0].startswith(f"MobileViT '{m.cfg.name}'") and mobilevit.get_isa() in text
    assert "<table>" in m._repr_html_() and all(f"stages.{i}" in m._repr_html_() for i in range(5))
    assert "\n" not in repr(m)


@pytest.mark.parametrize("x,word", [("photo.png", "path"), (b"\x89PNG", "bytes"),
                                    (Image.new("RGB", (8, 8)), "PIL image"),
                                    (np.zeros((64, 64, 3), np.uint8), "uint8 array"),
                                    (np.zeros((64, 64), np.uint8), "uint8 array")])
def test_input_hint_names_the_input_and_the_way_out(x, word):
    hint = input_hint(x)
    assert word in hint and "model.predict" in hint
    assert input_hint(np.zeros((1, 3, 8, 8), np.float32)) == ""
