"""Whole-network parity with the PyTorch references (issue 2, item 5).

Random weights with randomised BatchNorm/LayerNorm statistics and affine
parameters; logits and every stage's feature map within 1e-4 (scaled by
the tensor's magnitude where that exceeds 1) of HF transformers and timm, at
square, non-square and odd sizes, batch 1 and 3.  1 and 2 threads must give
bit-identical results, and every ISA path must match the references.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("transformers")

import mobilevit  # noqa: E402
from reference_models import assert_close, hf_model, state_dict_numpy, timm_model  # noqa: E402

VARIANTS = ["mobilevit_xxs", "mobilevit_xs", "mobilevit_s"]
SIZES = [(256, 256), (224, 224), (320, 320), (160, 288), (97, 131)]
_cache = {}


def reference(kind, name):
    key = (kind, name)
    if key not in _cache:
        ref = timm_model(name, seed=3) if kind == "timm" else hf_model(name, seed=5)
        ours = mobilevit.create_model(name)
        result = ours.load_state_dict(state_dict_numpy(ref))
        assert result.scheme == kind and not result.missing_keys and not result.unexpected_keys
        _cache[key] = (ref, ours)
    return _cache[key]


def ref_outputs(kind, ref, x):
    xt = torch.from_numpy(x)
    with torch.no_grad():
        if kind == "hf":
            out = ref(xt, output_hidden_states=True)
            return out.logits.numpy(), [h.numpy() for h in out.hidden_states]
        feats, h = [], ref.stem(xt)
        for stage in ref.stages:
            h = stage(h)
            feats.append(h.numpy())
        return ref(xt).numpy(), feats


@pytest.mark.parametrize("kind", ["timm", "hf"])
@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_logits_and_features_match(kind, name, size):
    ref, ours = reference(kind, name)
    batch = 3 if size in [(256, 256), (97, 131)] else 1
    x = np.random.default_rng(sum(size) + batch).random((batch, 3, *size), dtype=np.float32)
    ref_logits, ref_feats = ref_outputs(kind, ref, x)
    assert_close(ours(x), ref_logits, 1e-4, f"{kind} {name} {size} logits")
    feats = ours.forward_features(x)
    assert len(feats) == len(ref_feats) == 5
    for i, (f, rf) in enumerate(zip(feats, ref_feats)):
        assert_close(f, rf, 1e-4, f"{kind} {name} {size} stage {i + 1}")


@pytest.mark.parametrize("name", VARIANTS)
def test_threads_bit_identical(name):
    _, ours = reference("timm", name)
    x = np.random.default_rng(7).random((3, 3, 97, 131), dtype=np.float32)
    mobilevit.set_num_threads(1)
    y1 = ours(x)
    f1 = ours.forward_features(x)
    mobilevit.set_num_threads(2)
    y2 = ours(x)
    f2 = ours.forward_features(x)
    np.testing.assert_array_equal(y1, y2)
    for a, b in zip(f1, f2):
        np.testing.assert_array_equal(a, b)


def test_every_isa_matches_reference(isa):
    ref, ours = reference("timm", "mobilevit_xxs")
    x = np.random.default_rng(11).random((2, 3, 97, 131), dtype=np.float32)
    mobilevit.set_isa(isa)
    y = ours(x)
    with torch.no_grad():
        assert_close(y, ref(torch.from_numpy(x)).numpy(), 1e-4, f"isa {isa}")


def test_batch_rows_independent():
    """Image i of a batch gives the same logits as image i alone."""
    _, ours = reference("hf", "mobilevit_xs")
    x = np.random.default_rng(2).random((3, 3, 128, 160), dtype=np.float32)
    y = ours(x)
    for i in range(3):
        assert_close(ours(x[i:i + 1]), y[i:i + 1], 1e-5, f"row {i}")


def test_repeated_calls_and_shape_changes_are_stable():
    _, ours = reference("timm", "mobilevit_xxs")
    rng = np.random.default_rng(3)
    a = rng.random((1, 3, 64, 64), dtype=np.float32)
    b = rng.random((2, 3, 96, 80), dtype=np.float32)
    ya, yb = ours(a), ours(b)
    for _ in range(3):
        np.testing.assert_array_equal(ours(a), ya)
        np.testing.assert_array_equal(ours(b), yb)


@pytest.mark.parametrize("batch", [4, 5, 9])
def test_throughput_mode_is_bit_identical(batch):
    """Batches of >= 2 images per thread run whole images per worker (the
    remainder layer-parallel); each image must equal its single-image,
    single-thread result bit for bit, and match the reference."""
    ref, ours = reference("timm", "mobilevit_xxs")
    x = np.random.default_rng(batch).random((batch, 3, 97, 131), dtype=np.float32)
    mobilevit.set_num_threads(2)
    y = ours(x)
    feats = ours.forward_features(x)
    mobilevit.set_num_threads(1)
    for i in range(batch):
        np.testing.assert_array_equal(y[i:i + 1], ours(x[i:i + 1]))
        for f, fi in zip(feats, ours.forward_features(x[i:i + 1])):
            np.testing.assert_array_equal(f[i:i + 1], fi)
    with torch.no_grad():
        assert_close(y, ref(torch.from_numpy(x)).numpy(), 1e-4, "throughput mode")
