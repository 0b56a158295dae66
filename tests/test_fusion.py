"""Fused inverted residual chains (expand 1x1 + SiLU -> depthwise 3x3 + SiLU
-> project 1x1 [+ residual]) run by ``mv_invres_nhwc_f32``.

The fused kernel is specified to compute every element exactly as the three
separate kernels of the same ISA table do, so fused and unfused graphs must
agree bit for bit: every model family (v1, v2, DeepLabv3 with dilated
depthwise convs), odd sizes, every ISA, 1 and 2 threads, the per-image
throughput path, and ``features_only`` stage maps.  ``Graph.set_fusion``:
0 fuses every chain, -1 none, n >= 0 the chains whose expanded map has at
least n bytes per image (default 256 KiB).  Fused-away tensors cannot be
requested as outputs.  conftest restores the ISA and thread count; the
fixture below restores every cached graph's fusion threshold.
"""
import numpy as np
import pytest

import mobilevit
from mobilevit import testing

DEFAULT = 262144
NEVER = -1

MODELS = {
    "xxs": ("mobilevit_xxs", {}),
    "s": ("mobilevit_s", {}),
    "v2_050": ("mobilevitv2_050", {}),
    "deeplab_xxs_os8": ("deeplabv3_mobilevit_xxs", {"output_stride": 8}),    # dilated depthwise in layer 5
    "feat_xxs": ("mobilevit_xxs", {"features_only": True}),
    "feat_v2_050": ("mobilevitv2_050", {"features_only": True, "out_indices": (1, 3, 4)}),
}
_models = {}


def model(key):
    if key not in _models:
        name, kw = MODELS[key]
        _models[key] = mobilevit.create_model(name, **kw)
    return _models[key]


@pytest.fixture(autouse=True)
def _restore_fusion():
    yield
    for m in _models.values():
        m.set_fusion(DEFAULT)


def image(shape, seed=0):
    return np.random.default_rng(seed + sum(shape)).random(shape, dtype=np.float32)


def outputs(m, x, fusion):
    m.set_fusion(fusion)
    y = m(x)
    return list(y) if isinstance(y, list) else [y]


def dw_nodes(m):
    return [i for i, tag in enumerate(testing.node_tags(m)) if tag == "depthwise 3x3"]


def is_fused_away(m, tensor_id, hw):
    """Whether tensor_id is elided at input size hw (checked on an empty
    batch: the plan decision is per image, nothing is computed)."""
    try:
        testing.graph(m).run(np.zeros((0, 3, *hw), np.float32), (tensor_id,))
        return False
    except ValueError as e:
        assert "fused" in str(e)
        return True


def num_mv2(m):
    return len(m.cfg.layer1) + len(m.cfg.layer2) + 3


def assert_identical(ys, zs, what):
    assert len(ys) == len(zs)
    for k, (y, z) in enumerate(zip(ys, zs)):
        assert np.isfinite(y).all(), f"{what}[{k}] not finite"
        assert y.shape == z.shape, f"{what}[{k}]: {y.shape} != {z.shape}"
        assert np.array_equal(y, z), f"{what}[{k}]: max diff {np.abs(y - z).max():.3e}"


# ---- 1. fused == unfused, every model / size / ISA / thread count --------------------------------

SHAPES = [(1, 3, 64, 96), (3, 3, 65, 77)]


@pytest.mark.parametrize("key", ["xxs", "s", "v2_050", "deeplab_xxs_os8"])
@pytest.mark.parametrize("shape", SHAPES, ids=["1x64x96", "3x65x77"])
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_bit_identical_to_unfused(isa, key, shape, threads):
    m = model(key)
    x = image(shape)
    mobilevit.set_isa(isa)
    mobilevit.set_num_threads(threads)
    ref = outputs(m, x, NEVER)
    # 0: every chain; 64 KiB: only the early, large ones at these sizes (fused
    # and unfused chains mixed; the default fuses none of xxs's here)
    for fusion in (0, 65536):
        assert_identical(outputs(m, x, fusion), ref, f"{key} {isa} nth={threads} fusion={fusion}")
    m.set_fusion(0)
    fused = [k for k in dw_nodes(m) if is_fused_away(m, k + 1, shape[2:])]
    assert len(fused) == num_mv2(m), f"{key}: fused depthwise nodes {fused}"


# ---- 2. per-image throughput path ----------------------------------------------------------------

@pytest.mark.parametrize("key", ["xxs", "v2_050", "deeplab_xxs_os8"])
@pytest.mark.parametrize("batch", [4, 5])
def test_throughput_path_fused_matches(isa, key, batch):
    """B >= 2 x threads runs whole images per worker (remainder
    layer-parallel): fused and unfused, batched and single-image agree."""
    m = model(key)
    x = image((batch, 3, 65, 77), seed=batch)
    mobilevit.set_isa(isa)
    mobilevit.set_num_threads(2)
    (fused,) = outputs(m, x, 0)
    (unfused,) = outputs(m, x, NEVER)
    assert_identical([fused], [unfused], f"{key} batch {batch}")
    mobilevit.set_num_threads(1)
    for i in (0, batch - 1):
        for fusion in (0, NEVER):
            assert_identical(outputs(m, x[i:i + 1], fusion), [fused[i:i + 1]], f"{key} image {i} fusion={fusion}")


# ---- 3. features_only: stage outputs are chain outputs and still emitted -------------------------

@pytest.mark.parametrize("key", ["feat_xxs", "feat_v2_050"])
@pytest.mark.parametrize("threads", [1, 2])
def test_features_only_fused_matches(key, threads):
    m = model(key)
    x = image((2, 3, 97, 131))
    mobilevit.set_num_threads(threads)
    unfused = outputs(m, x, NEVER)
    fused = outputs(m, x, 0)
    assert len(fused) == len(m.out_indices)
    assert [f.shape[1] for f in fused] == [fi["num_chs"] for fi in m.feature_info]
    assert_identical(fused, unfused, key)
    # the stage maps read through forward_features too (all five stages)
    f_fused = m.forward_features(x)
    m.set_fusion(NEVER)
    assert_identical(f_fused, m.forward_features(x), f"{key} forward_features")


# ---- 4. fused-away tensors cannot be requested ---------------------------------------------------

# model, which depthwise node, its MV2 block, the chain's output size at 64x96
INNER = [("xxs", 0, "stages.0.0", (32, 48)),
         ("v2_050", 0, "stages.0.0", (32, 48)),
         ("deeplab_xxs_os8", -1, "stages.4.0", (8, 12))]     # the dilated one


@pytest.mark.parametrize("key,which,block,hw", INNER, ids=[r[0] for r in INNER])
def test_inner_tensor_request(key, which, block, hw):
    m = model(key)
    g = testing.graph(m)
    x = image((1, 3, 64, 96))
    k = dw_nodes(m)[which]
    assert testing.node_tags(m)[k - 1] == "conv 1x1" and testing.node_tags(m)[k + 1] == "conv 1x1"
    ce = m.params[f"{block}.conv2_kxk.conv.weight"].shape[0]
    cout = m.params[f"{block}.conv3_1x1.conv.weight"].shape[0]
    g.set_fusion(0)
    y = m(x)
    for tid in (k, k + 1):        # expand output, depthwise output
        with pytest.raises(ValueError, match="fused"):
            g.run(x, (tid,))
        with pytest.raises(ValueError, match="fused"):      # next to a stored output
            g.run(x, (k + 2, tid))
    (proj,) = g.run(x, (k + 2,))  # the chain output is stored
    assert proj.shape == (1, cout, *hw)
    np.testing.assert_array_equal(m(x), y)                 # the graph still works after the errors
    g.set_fusion(NEVER)
    exp, dw, proj2 = g.run(x, (k, k + 1, k + 2))
    assert exp.shape[:2] == dw.shape[:2] == (1, ce)
    assert dw.shape[2:] == hw
    assert dw.min() >= -0.2785                             # SiLU output
    np.testing.assert_array_equal(proj2, proj)
    np.testing.assert_array_equal(m(x), y)


def test_threshold_is_per_image_and_inclusive():
    """A chain is fused iff its expanded map has >= min_bytes per image."""
    m = model("xxs")
    g = testing.graph(m)
    k = dw_nodes(m)[0]
    x = image((2, 3, 64, 96))
    g.set_fusion(NEVER)
    (exp,) = g.run(x, (k,))
    ref = m(x)
    per_image = exp[0].size * 4
    for fusion, fused in [(per_image, True), (per_image + 1, False), (2 * per_image, False), (0, True)]:
        g.set_fusion(fusion)
        assert is_fused_away(m, k, (64, 96)) == fused, fusion
        np.testing.assert_array_equal(m(x), ref)
        try:
            g.run(x, (k + 1,))
            assert not fused, fusion
        except ValueError:
            assert fused, fusion


# ---- 5. fused model against the PyTorch reference ------------------------------------------------

_ref_cache = {}


def timm_reference():
    """timm mobilevit_xxs with randomised weights, our copy (fusion forced
    on) and the reference logits / stage maps on one odd-sized batch."""
    if not _ref_cache:
        torch = pytest.importorskip("torch")
        pytest.importorskip("timm")
        from reference_models import state_dict_numpy, timm_model
        ref = timm_model("mobilevit_xxs", seed=3)
        ours = mobilevit.create_model("mobilevit_xxs")
        ours.load_state_dict(state_dict_numpy(ref))
        x = image((2, 3, 97, 131), seed=5)
        xt = torch.from_numpy(x)
        with torch.no_grad():
            logits, h, feats = ref(xt).numpy(), ref.stem(xt), []
            for stage in ref.stages:
                h = stage(h)
                feats.append(h.numpy())
        _ref_cache.update(ours=ours, x=x, logits=logits, feats=feats)
    return _ref_cache


def test_fused_matches_timm_reference(isa):
    from reference_models import assert_close
    r = timm_reference()
    ours, x = r["ours"], r["x"]
    ours.set_fusion(0)
    assert is_fused_away(ours, dw_nodes(ours)[0] + 1, x.shape[2:])
    mobilevit.set_isa(isa)
    try:
        assert_close(ours(x), r["logits"], what=f"{isa} fused logits")
        for i, (f, rf) in enumerate(zip(ours.forward_features(x), r["feats"])):
            assert_close(f, rf, what=f"{isa} fused stage {i + 1}")
    finally:
        ours.set_fusion(DEFAULT)


# ---- 6. argument validation ----------------------------------------------------------------------

@pytest.mark.parametrize("arg,exc", [(-2, ValueError), (-(2 ** 40), ValueError), (1.5, TypeError),
                                     ("0", TypeError), (None, TypeError)])
def test_set_fusion_validation(arg, exc):
    m = model("xxs")
    g = testing.graph(m)
    g.set_fusion(0)
    with pytest.raises(exc):
        g.set_fusion(arg)
    assert is_fused_away(m, dw_nodes(m)[0], (64, 96))     # a rejected call changes nothing


def test_profile_reports_fused_blocks():
    """profile() names the fused blocks as one family and keeps the others."""
    m = mobilevit.create_model("mobilevit_xxs")
    g = testing.graph(m)
    x = np.random.default_rng(0).random((1, 3, 96, 128), dtype=np.float32)
    try:
        g.set_fusion(0)
        fused = m.profile(x, repeats=2, num_threads=1)
        g.set_fusion(-1)
        plain = m.profile(x, repeats=2, num_threads=1)
    finally:
        g.set_fusion(262144)
    label = "inverted residual (fused 1x1 + dw 3x3 + 1x1)"
    assert label in fused and fused[label] > 0
    assert label not in plain and plain["depthwise 3x3"] > 0
    assert "depthwise 3x3" not in fused        # every MV2 block of xxs is fused at 0
    assert fused["attention"] > 0 and plain["attention"] > 0
    modes = g.node_modes(1, 96, 128)
    assert len(modes) == len(testing.node_tags(m)) and set(modes) <= {testing.MODE_ALONE, testing.MODE_FUSED_HEAD, testing.MODE_FUSED_INNER,
                                                     testing.MODE_FUSED_TAIL}


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_profile_workers_accounts_for_the_pass(nth):
    """profile_workers(): one entry per worker; every chunk of every phase is
    run by exactly one worker (one chunk per phase when alone: the input
    layout change, each node a fused block does not swallow, the output
    copy).  Which worker runs how much is up to the OS: on a loaded machine
    one worker may run them all."""
    m = mobilevit.create_model("mobilevit_xxs")
    x = np.random.default_rng(0).random((1, 3, 64, 96), dtype=np.float32)
    w = m.profile_workers(x, repeats=2, num_threads=nth)
    assert len(w) == nth
    assert all(set(d) == {"busy_s", "wait_s", "chunks"} for d in w)
    assert all(d["chunks"] >= 0 and d["busy_s"] >= 0 and d["wait_s"] >= 0 for d in w)
    assert sum(d["busy_s"] for d in w) > 0
    phases = len(testing.node_tags(m)) + 2 - _inner_nodes(m, x)
    if nth == 1:
        assert w[0]["chunks"] == phases
    else:
        assert phases < sum(d["chunks"] for d in w) <= 4 * nth * phases
    with pytest.raises(TypeError):
        testing.graph(m).run(x, (0,), 1, [], True, "not a list")
    with pytest.raises(ValueError, match="profile"):
        testing.graph(m).run(x, (0,), 1, None, True, [])


def _inner_nodes(m, x):
    modes = testing.graph(m).node_modes(x.shape[0], *x.shape[2:])
    return sum(md in (testing.MODE_FUSED_INNER, testing.MODE_FUSED_TAIL) for md in modes)
