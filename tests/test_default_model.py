"""The bundled default model (mobilevit/data/, made by benchmarks/train_default_model.py).

A MobileViT-XXS trained on scikit-learn's 8x8 digits upscaled to 64x64 RGB.  The held-out split
ships as the 8x8 originals; ``upscale_digits`` rebuilds the exact 64x64 inputs used in training
(numpy only, no sklearn).  The package must classify them with >= 90 % accuracy and, when torch and
timm are present, give timm's logits for the same weights within 1e-4.
"""
import json
import os

import numpy as np
import pytest

import mobilevit

DATA = os.path.join(os.path.dirname(mobilevit.__file__), "data")
MODEL = os.path.join(DATA, "default_model.safetensors")
META = os.path.join(DATA, "default_model.json")
HELDOUT = os.path.join(DATA, "heldout_digits.npz")
SAMPLES = os.path.join(DATA, "samples")
BASE = 64


def upscale_digits(digits8, size=BASE):
    """[N, 8, 8] gray levels 0..16 -> uint8 RGB [N, size, size, 3]; the training script's recipe.

    Bilinear with half-pixel centres (torch ``F.interpolate(align_corners=False)``): source
    coordinate ``(i + 0.5) * 8 / size - 0.5`` clamped at 0, taps ``floor`` and ``min(floor + 1, 7)``;
    applied to ``digits8 / 16``, then ``rint(x * 255)`` and 3 identical channels.
    """
    n_in = digits8.shape[-1]
    src = np.maximum((np.arange(size) + 0.5) * n_in / size - 0.5, 0.0)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    a = np.zeros((size, n_in))
    a[np.arange(size), i0] += 1.0 - frac
    a[np.arange(size), i1] += frac
    up = np.einsum("hi,nij,wj->nhw", a, np.asarray(digits8, np.float64) / 16.0, a)
    u8 = np.clip(np.rint(up * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(u8[..., None], 3, axis=-1)


def read_weights(path):
    try:
        from mobilevit.checkpoint import read_safetensors
    except ImportError:
        st = pytest.importorskip("safetensors.numpy")
        return st.load_file(path)
    return read_safetensors(path)


@pytest.fixture(scope="module")
def meta():
    with open(META) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def weights():
    return read_weights(MODEL)


@pytest.fixture(scope="module")
def heldout():
    with np.load(HELDOUT) as z:
        digits8, labels = z["digits8"], z["labels"].astype(np.int64)
    x = upscale_digits(digits8).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(x), labels, digits8


@pytest.fixture(scope="module")
def model_and_logits(weights, heldout):
    m = mobilevit.create_model("mobilevit_xxs", num_classes=10)
    m.load_state_dict(weights)  # strict: every timm key present, nothing extra
    return m, m(heldout[0])


def test_files_are_small():
    assert os.path.getsize(MODEL) <= 8 * 1024 * 1024
    assert os.path.getsize(HELDOUT) < 1024 * 1024
    assert os.path.getsize(META) < 64 * 1024


def test_metadata(meta, weights, heldout):
    assert meta["architecture"] == "mobilevit_xxs"
    assert meta["num_classes"] == 10
    assert meta["id2label"] == {str(i): f"digit {i}" for i in range(10)}
    assert meta["image_size"] == BASE
    pre = meta["preprocess"]
    assert pre["resize_shortest"] == BASE and pre["crop"] == BASE and pre["channel_order"] == "RGB"
    assert pre["mean"] == [0, 0, 0] and pre["std"] == [1, 1, 1] and abs(pre["rescale"] - 1 / 255) < 1e-12
    assert meta["train"]["n_heldout"] == len(heldout[1])
    assert meta["train"]["pytorch_heldout_accuracy"] >= 0.90
    assert all(v.dtype == np.float32 for v in weights.values())
    assert not any(k.endswith("num_batches_tracked") for k in weights)
    assert weights["head.fc.weight"].shape == (10, 320)


def test_heldout_set(heldout):
    x, labels, digits8 = heldout
    assert x.shape == (len(labels), 3, BASE, BASE) and len(labels) >= 300
    assert digits8.dtype == np.uint8 and digits8.max() == 16
    assert np.bincount(labels, minlength=10).min() >= 30  # stratified: every digit well represented


def test_heldout_accuracy(model_and_logits, heldout, meta):
    _, logits = model_and_logits
    labels = heldout[1]
    assert logits.shape == (len(labels), 10) and np.isfinite(logits).all()
    acc = float((logits.argmax(1) == labels).mean())
    assert acc >= 0.90, f"held-out accuracy {acc:.4f}"
    # same weights, same inputs: at most one borderline image may flip relative to PyTorch
    assert abs(acc - meta["train"]["pytorch_heldout_accuracy"]) <= 1.0 / len(labels) + 1e-9


def test_matches_timm(model_and_logits, heldout, weights):
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    ref = timm.create_model("mobilevit_xxs", num_classes=10, pretrained=False).eval()
    ref.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()}, strict=True)
    with torch.no_grad():
        expected = ref(torch.from_numpy(heldout[0])).numpy()
    got = model_and_logits[1]
    diff = np.abs(got - expected)
    worst = np.unravel_index(diff.argmax(), diff.shape)
    assert diff.max() <= 1e-4, f"max |mobilevit - timm| = {diff.max():.3g} at image {worst[0]}, class {worst[1]}"
    assert np.array_equal(got.argmax(1), expected.argmax(1))


def test_samples(heldout):
    from PIL import Image
    _, labels, digits8 = heldout
    names = sorted(n for n in os.listdir(SAMPLES) if n.endswith(".png"))
    assert 6 <= len(names) <= 10
    for name in names:
        label, idx = name[len("digit_"):-len(".png")].split("_idx")
        label, idx = int(label), int(idx)
        assert labels[idx] == label, name
        with Image.open(os.path.join(SAMPLES, name)) as im:
            assert im.mode == "RGB" and im.size == (BASE, BASE), name
            assert np.array_equal(np.asarray(im), upscale_digits(digits8[idx:idx + 1])[0]), name
