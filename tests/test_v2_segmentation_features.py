"""MobileViTv2, DeepLabv3 and feature extraction (issue 6) against timm and
HF transformers, random weights with randomised norms, within 1e-4 (scaled
by magnitude above 1), at even and odd sizes."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("transformers")

import mobilevit  # noqa: E402
from reference_models import (assert_close, hf_seg_model, hf_v2_model, hf_v2_seg_model,  # noqa: E402
                              state_dict_numpy, timm_model)


def x_of(shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def run(model, x):
    with torch.no_grad():
        y = model(torch.from_numpy(x))
    return (y.logits if hasattr(y, "logits") else y).numpy()


@pytest.mark.parametrize("name,sizes", [
    ("mobilevitv2_050", [(256, 256), (224, 224), (97, 131), (160, 288)]),
    ("mobilevitv2_075", [(256, 256), (200, 170)]),
    ("mobilevitv2_100", [(128, 128), (97, 131)]),
    ("mobilevitv2_125", [(96, 96)]),
    ("mobilevitv2_150", [(64, 96)]),
    ("mobilevitv2_175", [(64, 64)]),
    ("mobilevitv2_200", [(64, 64)]),
])
def test_v2_matches_timm(name, sizes):
    ref = timm_model(name, seed=31)
    ours = mobilevit.from_pretrained(state_dict_numpy(ref))
    assert ours.cfg.name == name and ours.cfg.odd_size == "resize"
    for i, size in enumerate(sizes):
        x = x_of((2 if i == 0 else 1, 3, *size), i)
        assert_close(ours(x), run(ref, x), 1e-4, f"{name} {size}")


@pytest.mark.parametrize("alpha,name", [(0.5, "mobilevitv2_050"), (1.0, "mobilevitv2_100")])
def test_v2_matches_hf_including_odd_sizes(alpha, name):
    """HF drops the odd row/column in unfold and zero-fills it in fold; the
    model built from HF names follows that by default."""
    ref = hf_v2_model(alpha, seed=41)
    ours = mobilevit.from_pretrained(state_dict_numpy(ref))
    assert ours.cfg.name == name and ours.cfg.odd_size == "crop"
    for i, size in enumerate([(256, 256), (224, 224), (97, 131)]):
        x = x_of((2, 3, *size), i)
        with torch.no_grad():
            out = ref(torch.from_numpy(x), output_hidden_states=True)
        assert_close(ours(x), out.logits.numpy(), 1e-4, f"hf v2 {size}")
        for k, (f, rf) in enumerate(zip(ours.forward_features(x), out.hidden_states)):
            assert_close(f, rf.numpy(), 1e-4, f"hf v2 {size} stage {k}")
    # the user can pick the other convention; on even sizes both agree
    other = mobilevit.create_model(name, odd_size="resize", weights=state_dict_numpy(ref))
    x = x_of((1, 3, 256, 256), 7)
    assert_close(other(x), run(ref, x), 1e-4, "resize mode on even size")


@pytest.mark.parametrize("name,size,os_", [("mobilevit_xxs", (512, 512), 16), ("mobilevit_s", (257, 193), 16),
                                           ("mobilevit_xs", (160, 224), 8)])
def test_deeplabv3_v1_matches_hf(name, size, os_):
    ref = hf_seg_model(name, seed=51, output_stride=os_)
    sd = state_dict_numpy(ref)
    ours = mobilevit.create_model("deeplabv3_" + name, output_stride=os_, weights=sd)
    assert ours.num_classes == 21
    x = x_of((1, 3, *size), 3)
    expected = run(ref, x)
    got = ours(x)
    assert got.shape == expected.shape
    assert_close(got, expected, 1e-4, f"deeplab {name} {size} os{os_}")
    # from_pretrained on HF names detects the segmentation head
    fp = mobilevit.from_pretrained(sd)
    assert fp.cfg.head == "deeplabv3"
    if os_ == 16:
        np.testing.assert_array_equal(fp(x), got)


def test_deeplabv3_v2_matches_hf():
    ref = hf_v2_seg_model(0.5, seed=61, output_stride=16)
    ours = mobilevit.create_model("deeplabv3_mobilevitv2_050", odd_size="crop", output_stride=16,
                                  weights=state_dict_numpy(ref))
    assert ours.cfg.aspp_channels == 512
    for size in [(256, 256), (193, 161)]:
        x = x_of((1, 3, *size), 5)
        assert_close(ours(x), run(ref, x), 1e-4, f"deeplab v2 {size}")


def test_segment_mask_matches_hf_post_processing():
    from transformers import MobileViTImageProcessor
    ref = hf_seg_model("mobilevit_xxs", seed=71)
    ours = mobilevit.create_model("deeplabv3_mobilevit_xxs", weights=state_dict_numpy(ref))
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (150, 210, 3), dtype=np.uint8)
    proc = MobileViTImageProcessor(crop_size={"height": 128, "width": 128}, size={"shortest_edge": 160})
    inputs = proc(images=img, return_tensors="pt")
    with torch.no_grad():
        out = ref(**inputs)
    expected = proc.post_process_semantic_segmentation(out, target_sizes=[(150, 210)])[0].numpy()
    from mobilevit.preprocess import Preprocess
    preset = Preprocess.from_name("hf", resize_shortest=160, crop=128)
    mask = ours.segment(img, preset=preset)
    assert mask.shape == (150, 210)
    # argmax ties are impossible to control with random weights; allow a tiny fraction
    assert (mask == expected).mean() > 0.999


def test_features_only():
    ref = timm_model("mobilevit_xs", seed=81)
    m = mobilevit.create_model("mobilevit_xs", features_only=True, out_indices=(1, 3, 4),
                               weights={k: v for k, v in state_dict_numpy(ref).items()
                                        if not k.startswith("head")})
    # like timm, index 4 is the final 1x1 expansion conv's output for v1
    assert [f["num_chs"] for f in m.feature_info] == [48, 80, 384]
    assert [f["reduction"] for f in m.feature_info] == [4, 16, 32]
    x = x_of((2, 3, 161, 224), 9)
    feats = m(x)
    import timm
    tf = timm.create_model("mobilevit_xs", features_only=True, out_indices=(1, 3, 4))
    assert tf.feature_info.channels() == [48, 80, 384] and tf.feature_info.reduction() == [4, 16, 32]
    tf.load_state_dict({k.replace("stages.", "stages_", 1): v for k, v in ref.state_dict().items()
                        if not k.startswith("head")})
    tf.eval()
    with torch.no_grad():
        expected = tf(torch.from_numpy(x))
    assert len(feats) == len(expected) == 3
    for f, e in zip(feats, expected):
        assert_close(f, e.numpy(), 1e-4, "features_only")
    with pytest.raises(ValueError, match="out_indices"):
        mobilevit.create_model("mobilevit_xs", features_only=True, out_indices=(5,))


def test_v2_and_seg_roundtrip_through_save(tmp_path):
    m = mobilevit.create_model("deeplabv3_mobilevitv2_050", num_classes=3, odd_size="crop", seed=4)
    m2 = mobilevit.from_pretrained(m.save(str(tmp_path / "seg")))
    assert m2.cfg.head == "deeplabv3" and m2.cfg.odd_size == "crop" and m2.num_classes == 3
    x = x_of((1, 3, 97, 101), 1)
    np.testing.assert_array_equal(m2(x), m(x))


def _timm_v2_to_cvnets(k: str, depth: dict) -> str:
    from test_api import _timm_to_cvnets
    return _timm_to_cvnets(k, depth, version=2)


def test_cvnets_names_for_v2_and_deeplab():
    """ml-cvnets checkpoints (v2 classification; DeepLabv3 with the encoder. prefix and the
    aspp_layer / classifier.classifier names) load through from_pretrained."""
    ref = timm_model("mobilevitv2_050", seed=91)
    sd = {_timm_v2_to_cvnets(k, {2: 2, 3: 4, 4: 3}): v for k, v in state_dict_numpy(ref).items()}
    assert "layer_3.1.global_rep.0.pre_norm_attn.1.qkv_proj.block.conv.weight" in sd
    m = mobilevit.from_pretrained(sd)
    assert m.cfg.name == "mobilevitv2_050" and m.pretrained_cfg["scheme"] == "cvnets"
    x = x_of((1, 3, 97, 131), 2)
    assert_close(m(x), run(ref, x), 1e-4, "cvnets v2")

    seg = mobilevit.create_model("deeplabv3_mobilevit_xxs", num_classes=5, seed=8)
    cv = {}
    for k, v in seg.state_dict().items():
        if k.startswith("seg_head."):
            k = (k.replace("seg_head.aspp.convs.4.", "seg_head.aspp.aspp_layer.convs.4.aspp_pool.conv_1x1.block.")
                 .replace("seg_head.aspp.convs.", "seg_head.aspp.aspp_layer.convs.")
                 .replace("seg_head.aspp.project.", "seg_head.aspp.aspp_layer.project.block.")
                 .replace("seg_head.classifier.", "seg_head.classifier.classifier.block.conv."))
            import re
            k = re.sub(r"(aspp_layer\.convs\.[0-3])\.", r"\1.block.", k)
            k = k.replace(".block.bn.", ".block.norm.")
        else:
            k = "encoder." + _timm_to_cvnets_v1(k)
        cv[k] = v
    assert "seg_head.aspp.aspp_layer.convs.1.block.conv.weight" in cv
    assert "seg_head.classifier.classifier.block.conv.bias" in cv
    back = mobilevit.from_pretrained(cv)
    assert back.cfg.head == "deeplabv3" and back.pretrained_cfg["scheme"] == "cvnets"
    x = x_of((1, 3, 128, 160), 3)
    np.testing.assert_array_equal(back(x), seg(x))


def _timm_to_cvnets_v1(k):
    from test_api import _timm_to_cvnets
    return _timm_to_cvnets(k, {2: 2, 3: 4, 4: 3})
