"""User-facing API: construction, loading, bad input, threads and ISA
switches (issue 2, items 4 and 6)."""
import os
import re

import numpy as np
import pytest

import mobilevit
from reference_models import assert_close


@pytest.fixture(scope="module")
def xxs():
    return mobilevit.create_model("mobilevit_xxs")


def test_list_and_param_counts():
    names = mobilevit.list_models(segmentation=False)
    assert {"mobilevit_s", "mobilevit_xs", "mobilevit_xxs", "mobilevitv2_050", "mobilevitv2_200"} <= set(names)
    assert set(mobilevit.list_models()) == set(names) | {f"deeplabv3_{n}" for n in names}
    counts = {n: mobilevit.create_model(n).num_parameters() for n in names}
    # exact counts of the released architectures (spec 1.3 and 8.1; timm agrees)
    assert counts == {"mobilevit_xxs": 1272024, "mobilevit_xs": 2317848, "mobilevit_s": 5578632,
                      "mobilevitv2_050": 1370593, "mobilevitv2_075": 2866009, "mobilevitv2_100": 4901841,
                      "mobilevitv2_125": 7478089, "mobilevitv2_150": 10594753, "mobilevitv2_175": 14251833,
                      "mobilevitv2_200": 18449329}


def test_repr_and_feature_info(xxs):
    r = repr(xxs)
    assert "mobilevit_xxs" in r and "1.27M" in r and "num_classes=1000" in r
    assert [f["reduction"] for f in xxs.feature_info] == [2, 4, 8, 16, 32]
    assert [f["num_chs"] for f in xxs.feature_info] == [16, 24, 48, 64, 80]


def test_feature_shapes(xxs):
    feats = xxs.forward_features(np.zeros((2, 3, 97, 131), np.float32))
    assert [f.shape for f in feats] == [(2, 16, 49, 66), (2, 24, 25, 33), (2, 48, 13, 17), (2, 64, 7, 9),
                                        (2, 80, 4, 5)]


def test_aliases_and_unknown_name(monkeypatch, tmp_path):
    with pytest.warns(UserWarning, match="random weights"):
        assert mobilevit.create_model("apple/mobilevit-xx-small").cfg.name == "mobilevit_xxs"
    with pytest.raises(ValueError, match="unknown model"):
        mobilevit.create_model("mobilevit_m")
    # pretrained=True goes through the hub (offline, empty cache: a clear error, no network).  In a
    # child process: huggingface_hub reads HF_HUB_OFFLINE once, at import.
    import subprocess
    import sys
    code = ("import mobilevit\n"
            "try:\n    mobilevit.create_model('mobilevit_s', pretrained=True)\n"
            "except mobilevit.CheckpointError as e:\n    print('refused:', e)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(mobilevit.__file__)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "PYTHONPATH": root})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("refused:") and ("offline" in r.stdout or "huggingface_hub" in r.stdout), r.stdout


def test_num_classes_and_headless():
    m = mobilevit.create_model("mobilevit_xxs", num_classes=10)
    assert m(np.zeros((1, 3, 64, 64), np.float32)).shape == (1, 10)
    m0 = mobilevit.create_model("mobilevit_xxs", num_classes=0)
    assert m0(np.zeros((2, 3, 64, 64), np.float32)).shape == (2, 320)


@pytest.mark.parametrize("bad,exc,pattern", [
    (np.zeros((1, 3, 64, 64), np.int64), TypeError, "floating-point"),
    (np.zeros((1, 3, 64, 64), object), TypeError, "floating-point"),
    (np.zeros((1, 3, 64, 64), bool), TypeError, "floating-point"),
    (np.zeros((3, 64, 64), np.float32), ValueError, "4-D.*x\\[None\\]"),
    (np.zeros((1, 1, 3, 64, 64), np.float32), ValueError, "4-D"),
    (np.zeros((1, 4, 64, 64), np.float32), ValueError, "3 channels"),
    (np.zeros((1, 64, 64, 3), np.float32), ValueError, "3 channels"),
    (np.zeros((1, 3, 31, 64), np.float32), ValueError, "at least 32"),
    (np.zeros((1, 3, 64, 0), np.float32), ValueError, "at least 32"),
    (np.full((1, 3, 64, 64), np.nan, np.float32), ValueError, "NaN"),
    ("not an array", TypeError, "floating-point"),
])
def test_bad_input_raises(xxs, bad, exc, pattern):
    with pytest.raises(exc, match=pattern):
        xxs(bad)


def test_layouts_and_dtypes_give_the_contiguous_result(xxs):
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 70, 90), dtype=np.float32)
    ref = xxs(x)
    np.testing.assert_array_equal(xxs(np.asfortranarray(x)), ref)
    big = np.zeros((2, 3, 140, 90), np.float32)
    big[:, :, ::2] = x
    np.testing.assert_array_equal(xxs(big[:, :, ::2]), ref)               # strided view
    np.testing.assert_array_equal(xxs(x[:, :, ::-1].copy()[:, :, ::-1]), ref)  # negative strides
    np.testing.assert_array_equal(xxs(x.astype(">f4")), ref)               # big-endian
    ro = x.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(xxs(ro), ref)
    np.testing.assert_array_equal(xxs(x.astype(np.float64)), ref)          # exact round trip
    assert_close(xxs(x.astype(np.float16)), xxs(x.astype(np.float16).astype(np.float32)), 0, "float16")


def test_empty_batch(xxs):
    y = xxs(np.zeros((0, 3, 64, 64), np.float32))
    assert y.shape == (0, 1000)
    feats = xxs.forward_features(np.zeros((0, 3, 64, 64), np.float32))
    assert [f.shape[0] for f in feats] == [0] * 5


def test_odd_and_minimum_sizes_run(xxs):
    for h, w in [(32, 32), (33, 47), (65, 32), (224, 225)]:
        y = xxs(np.random.default_rng(h).random((1, 3, h, w), dtype=np.float32))
        assert y.shape == (1, 1000) and np.isfinite(y).all()


# timm -> ml-cvnets renames of the MobileViT block (spec appendix A and 8.3), per version
_CVNETS_BLOCK = {
    1: {"local": [("conv_kxk.conv.", "local_rep.conv_3x3.block.conv."),
                  ("conv_kxk.bn.", "local_rep.conv_3x3.block.norm."),
                  ("conv_1x1.weight", "local_rep.conv_1x1.block.conv.weight"),
                  ("conv_fusion.conv.", "fusion.block.conv."), ("conv_fusion.bn.", "fusion.block.norm.")],
        "attn": "pre_norm_mha",
        "sub": {"norm1.": "0.", "attn.qkv.": "1.qkv_proj.", "attn.proj.": "1.out_proj.",
                "norm2.": "ffn.0.", "mlp.fc1.": "ffn.1.", "mlp.fc2.": "ffn.4."}},
    2: {"local": [("conv_kxk.conv.", "local_rep.0.block.conv."), ("conv_kxk.bn.", "local_rep.0.block.norm."),
                  ("conv_1x1.weight", "local_rep.1.block.conv.weight")],
        "attn": "pre_norm_attn",
        "sub": {"norm1.": "0.", "attn.qkv_proj.": "1.qkv_proj.block.conv.",
                "attn.out_proj.": "1.out_proj.block.conv.", "norm2.": "ffn.0.",
                "mlp.fc1.": "ffn.1.block.conv.", "mlp.fc2.": "ffn.3.block.conv."}},
}


def _timm_to_cvnets(k: str, depth: dict, version: int = 1) -> str:
    """ml-cvnets names from timm names (independent of the package's own
    mapping; rules from the spec's appendix A and section 8.3)."""
    k = re.sub(r"^stem\.conv\.", "conv_1.block.conv.", k)
    k = re.sub(r"^stem\.bn\.", "conv_1.block.norm.", k)
    k = re.sub(r"^final_conv\.conv\.", "conv_1x1_exp.block.conv.", k)
    k = re.sub(r"^final_conv\.bn\.", "conv_1x1_exp.block.norm.", k)
    k = re.sub(r"^head\.fc\.", "classifier.fc." if version == 1 else "classifier.1.", k)
    m = re.match(r"^stages\.(\d)\.(\d+)\.(.*)$", k)
    if not m:
        return k
    i, j, rest = int(m.group(1)), m.group(2), m.group(3)
    pre = f"layer_{i + 1}.{j}."
    for t, c in (("conv1_1x1", "exp_1x1"), ("conv2_kxk", "conv_3x3"), ("conv3_1x1", "red_1x1")):
        if rest.startswith(t + "."):
            rest = rest.replace(t + ".conv.", f"block.{c}.block.conv.").replace(t + ".bn.", f"block.{c}.block.norm.")
            return pre + rest
    table = _CVNETS_BLOCK[version]
    for a, b in table["local"]:
        rest = rest.replace(a, b)
    rest = rest.replace("conv_proj.conv.", "conv_proj.block.conv.").replace("conv_proj.bn.", "conv_proj.block.norm.")
    tm = re.match(r"^transformer\.(\d+)\.(.*)$", rest)
    if tm:
        for a, b in table["sub"].items():
            if tm.group(2).startswith(a):
                head = "pre_norm_ffn." + b[len("ffn."):] if b.startswith("ffn.") else f"{table['attn']}.{b}"
                return pre + f"global_rep.{tm.group(1)}." + head + tm.group(2)[len(a):]
    if rest.startswith("norm."):
        return pre + f"global_rep.{depth[i]}." + rest[len("norm."):]
    return pre + rest


def test_three_naming_schemes_load_the_same_weights():
    """timm names, HF names (q/k/v split, other module names) and ml-cvnets
    names of the same weights give the same network."""
    torch = pytest.importorskip("torch")
    from reference_models import hf_model, state_dict_numpy
    hf = hf_model("mobilevit_xxs", seed=9)
    sd_hf = state_dict_numpy(hf)
    m_hf = mobilevit.create_model("mobilevit_xxs")
    assert m_hf.load_state_dict(sd_hf).scheme == "hf"
    timm_sd = m_hf.state_dict()
    m_timm = mobilevit.create_model("mobilevit_xxs", seed=1)
    assert m_timm.load_state_dict(timm_sd).scheme == "timm"
    depth = {2: 2, 3: 4, 4: 3}
    cv_sd = {_timm_to_cvnets(k, depth): v for k, v in timm_sd.items()}
    cv_sd = {("module." + k): v for k, v in cv_sd.items()}          # DDP prefix too
    m_cv = mobilevit.create_model("mobilevit_xxs", seed=2)
    assert m_cv.load_state_dict(cv_sd).scheme == "cvnets"
    x = np.random.default_rng(0).random((1, 3, 96, 96), dtype=np.float32)
    with torch.no_grad():
        ref = hf(torch.from_numpy(x)).logits.numpy()
    for m in (m_hf, m_timm, m_cv):
        assert_close(m(x), ref, 1e-4, "scheme")
    # torch tensors are accepted directly
    m_t = mobilevit.create_model("mobilevit_xxs", seed=3)
    m_t.load_state_dict(hf.state_dict())
    np.testing.assert_array_equal(m_t(x), m_hf(x))


def test_strict_loading_reports_keys_and_shapes():
    m = mobilevit.create_model("mobilevit_xxs")
    before = m(np.ones((1, 3, 64, 64), np.float32))
    sd = m.state_dict()
    bad = dict(sd)
    bad["head.fc.weight"] = np.zeros((21, 320), np.float32)
    with pytest.raises(mobilevit.StateDictError, match=r"head\.fc\.weight: expected \(1000, 320\), found \(21, 320\)"):
        m.load_state_dict(bad)
    missing = dict(sd)
    del missing["stem.bn.running_var"]
    missing["extra.thing"] = np.zeros(3, np.float32)
    with pytest.raises(mobilevit.StateDictError) as ei:
        m.load_state_dict(missing)
    assert ei.value.missing == ["stem.bn.running_var"] and ei.value.unexpected == ["extra.thing"]
    # nothing changed after a failed strict load
    np.testing.assert_array_equal(m(np.ones((1, 3, 64, 64), np.float32)), before)
    # non-strict: loads what matches, reports the rest
    partial = {k: v * 0.5 if k.startswith("head.") else v for k, v in sd.items() if k != "stem.conv.weight"}
    r = m.load_state_dict(partial, strict=False)
    assert r.missing_keys == ["stem.conv.weight"]
    np.testing.assert_array_equal(m.params["head.fc.weight"], sd["head.fc.weight"] * 0.5)
    with pytest.raises(mobilevit.StateDictError, match="mobilevit_xxs"):
        mobilevit.create_model("mobilevit_xxs").load_state_dict(mobilevit.create_model("mobilevit_xs").state_dict())
    with pytest.raises(TypeError, match="mapping"):
        m.load_state_dict([1, 2, 3])


def test_threads_and_isa_settings():
    mobilevit.set_num_threads(1)
    assert mobilevit.get_num_threads() == 1
    with pytest.raises(ValueError):
        mobilevit.set_num_threads(0)
    assert "ref" in mobilevit.available_isas()
    mobilevit.set_isa("ref")
    assert mobilevit.get_isa() == "ref"
    mobilevit.set_isa("auto")
    assert mobilevit.get_isa() == mobilevit.available_isas()[-1]
    with pytest.raises(ValueError, match="unknown ISA"):
        mobilevit.set_isa("sve")
    # every named path is either available or refused with a clear error, never a silent fallback
    import platform
    for isa, arch in (("avx2", "x86_64"), ("avx512", "x86_64"), ("neon", "aarch64")):
        if platform.machine().lower() in (arch, "amd64" if arch == "x86_64" else "arm64"):
            continue
        assert isa not in mobilevit.available_isas()
        with pytest.raises(ValueError, match="not supported by this CPU"):
            mobilevit.set_isa(isa)
        with pytest.raises(ValueError, match=f"'{isa}' is not available"):
            mobilevit.ops.relu(np.zeros(3, np.float32), isa=isa)
    if platform.machine().lower() in ("aarch64", "arm64"):
        assert mobilevit.available_isas() == ["ref", "neon"] and mobilevit.get_isa() == "neon"


def test_default_threads_honour_omp_num_threads(tmp_path):
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(mobilevit.__file__)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": root}
    out = subprocess.run([sys.executable, "-c", "import mobilevit; print(mobilevit.get_num_threads())"],
                         env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.strip() == "1", out.stderr


def test_memory_cap_refuses_before_allocating(xxs):
    need = xxs.activation_bytes(4, 512, 512)
    assert need > 10 * 2 ** 20
    m = mobilevit.create_model("mobilevit_xxs")
    m.set_memory_limit(need // 2)
    with pytest.raises(MemoryError, match="MiB"):
        m(np.zeros((4, 3, 512, 512), np.float32))
    m(np.zeros((1, 3, 64, 64), np.float32))       # small inputs still run
