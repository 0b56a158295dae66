"""Every ml-cvnets recipe, the preprocessing of each origin and the label rule (issue 13, items 4-6).

ml-cvnets is not installed, so its DeepLabv3 checkpoints are reconstructed: transformers'
MobileViT(V2)ForSemanticSegmentation with the recipe's output stride, atrous rates and ASPP width,
random weights and BatchNorm statistics, renamed to ml-cvnets' state-dict names (encoder. prefix,
aspp_layer, v0.2+ classifier) plus the training-only aux head ml-cvnets' use_aux_head adds, saved
with torch.save.  ml-cvnets' MobileViTv2 block dilates its local depthwise conv (dilation 2 in layer
4, 4 in layer 5 at output stride 8; 2 in layer 5 at 16), which HF's does not: the HF reference gets
those dilations set on its conv_kxk, as ml-cvnets builds it."""
import json
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import mobilevit  # noqa: E402
from mobilevit.keymap import to_timm  # noqa: E402
from reference_models import HF_CONFIGS, assert_close, randomize_, state_dict_numpy  # noqa: E402
from test_api import _timm_to_cvnets  # noqa: E402

DEPTH = {2: 2, 3: 4, 4: 3}


def hf_seg(version, os_, rates, aspp, n, seed=3):
    import transformers as T
    torch.manual_seed(seed)
    if version == 1:
        cfg = T.MobileViTConfig(num_labels=n, output_stride=os_, atrous_rates=list(rates), aspp_out_channels=aspp,
                                **HF_CONFIGS["mobilevit_xxs"])
        return randomize_(T.MobileViTForSemanticSegmentation(cfg), seed + 1)
    cfg = T.MobileViTV2Config(num_labels=n, width_multiplier=0.5, output_stride=os_, atrous_rates=list(rates),
                              aspp_out_channels=aspp)
    return randomize_(T.MobileViTV2ForSemanticSegmentation(cfg), seed + 1)


def dilate_like_cvnets(ref, os_):
    """ml-cvnets' MobileViTv2 Block(dilation=self.dilation) on HF's v2 encoder."""
    dil = {8: {3: 2, 4: 4}, 16: {4: 2}}[os_]
    for i, d in dil.items():
        conv = ref.mobilevitv2.encoder.layer[i].conv_kxk.convolution
        conv.dilation, conv.padding = (d, d), (d, d)
    return ref


def cvnets_state_dict(ref, version, aux=True, aux_inner=None, extra=None):
    """ml-cvnets names for an HF segmentation model's weights, with the aux head it trains."""
    timm_sd, _ = to_timm(state_dict_numpy(ref))
    out = {}
    for k, v in timm_sd.items():
        if k.startswith("seg_head."):
            k = (k.replace("seg_head.aspp.convs.4.", "seg_head.aspp.aspp_layer.convs.4.aspp_pool.conv_1x1.block.")
                 .replace("seg_head.aspp.convs.", "seg_head.aspp.aspp_layer.convs.")
                 .replace("seg_head.aspp.project.", "seg_head.aspp.aspp_layer.project.block.")
                 .replace("seg_head.classifier.", "seg_head.classifier.block.conv."))
            k = re.sub(r"(aspp_layer\.convs\.[0-3])\.", r"\1.block.", k).replace(".block.bn.", ".block.norm.")
        else:
            k = "encoder." + _timm_to_cvnets(k, DEPTH, version=version)
        out[k] = torch.from_numpy(np.ascontiguousarray(v))
    n = out["seg_head.classifier.block.conv.weight"].shape[0]
    if aux:
        c4 = {1: 64, 2: 192}[version]                       # layer 4 width of XXS / v2-0.5
        inner = aux_inner or max(c4 // 4, 128)
        g = torch.Generator().manual_seed(9)
        out["seg_head.aux_head.0.block.conv.weight"] = torch.randn(inner, c4, 3, 3, generator=g)
        for s in ("weight", "bias", "running_mean", "running_var"):
            out[f"seg_head.aux_head.0.block.norm.{s}"] = torch.rand(inner, generator=g) + 0.5
        out["seg_head.aux_head.0.block.norm.num_batches_tracked"] = torch.tensor(7)
        out["seg_head.aux_head.2.block.conv.weight"] = torch.randn(n, inner, 1, 1, generator=g)
        out["seg_head.aux_head.2.block.conv.bias"] = torch.randn(n, generator=g)
    out.update(extra or {})
    return out


def logits(ref, x):
    with torch.no_grad():
        return ref(torch.from_numpy(x)).logits.numpy()


X = np.random.default_rng(0).random((1, 3, 128, 160), dtype=np.float32)


@pytest.fixture(scope="module")
def v1_os8(tmp_path_factory):
    ref = hf_seg(1, 8, (12, 24, 36), 512, 21)
    path = tmp_path_factory.mktemp("v1") / "deeplabv3_mobilevit_xxs.pt"
    torch.save(cvnets_state_dict(ref, 1), path)
    return ref, path


def test_v1_pascal_voc_os8_recipe_is_inferred(v1_os8):
    ref, path = v1_os8
    m = mobilevit.from_pretrained(path)
    c, pc = m.cfg, m.pretrained_cfg
    assert (c.output_stride, c.aspp_rates, c.aspp_channels) == (8, (12, 24, 36), 512)
    assert pc["sources"] == {"output_stride": "assumed", "aspp_rates": "assumed", "aspp_channels": "file"}
    assert pc["recipe"] == "cvnets_v1_os8" and "pascal_voc/deeplabv3_mobilevit.yaml" in pc["recipe_note"]
    assert sorted(pc["ignored"]["keys"]) == sorted(
        ["seg_head.aux_head.0.conv.weight", "seg_head.aux_head.2.weight", "seg_head.aux_head.2.bias"]
        + [f"seg_head.aux_head.0.bn.{s}" for s in ("weight", "bias", "running_mean", "running_var")])
    r = repr(m)
    assert "output_stride=8 [assumed]" in r and "aspp_channels=512 [file]" in r and "\n" not in r
    s = str(m.summary((64, 64)))
    assert "output_stride=8 (assumed)" in s and "auxiliary" in s and "cvnets_v2_seg_bilinear" in s
    # v0.2+ evaluation: RGB, short side 512, no crop; logits upsampled with align_corners=True
    assert pc["origin"] == "cvnets_v2_deeplab_v1" and pc["align_corners"] is True
    pre = mobilevit.predictor.preset_for(m)
    assert (pre.channel_order, pre.resize_shortest, pre.crop, pre.interpolation) == ("RGB", 512, None, "bilinear")
    assert_close(m(X), logits(ref, X), 1e-4, "ml-cvnets v1 os8")


def test_arguments_and_config_json_reach_create_model(v1_os8, tmp_path):
    ref, path = v1_os8
    os16 = hf_seg(1, 16, (6, 12, 18), 512, 21)
    os16.load_state_dict(ref.state_dict())                 # same weights, the other recipe
    m = mobilevit.from_pretrained(path, output_stride=16)
    assert (m.cfg.output_stride, m.cfg.aspp_rates) == (16, (6, 12, 18))
    assert m.pretrained_cfg["sources"]["output_stride"] == "argument"
    assert_close(m(X), logits(os16, X), 1e-4, "output_stride=16")
    m2 = mobilevit.from_pretrained(path, output_stride=16, aspp_rates=(12, 24, 36))
    assert m2.cfg.aspp_rates == (12, 24, 36) and m2.pretrained_cfg["sources"]["aspp_rates"] == "argument"
    with pytest.raises(mobilevit.StateDictError, match="aspp"):
        mobilevit.from_pretrained(path, aspp_channels=256)  # the file's ASPP is 512 wide
    # a config.json beside the weights
    d = tmp_path / "folder"
    d.mkdir()
    (d / "weights.pt").write_bytes(path.read_bytes())
    (d / "config.json").write_text(json.dumps({"output_stride": 16, "atrous_rates": [6, 12, 18]}))
    m3 = mobilevit.from_pretrained(d)
    assert m3.pretrained_cfg["sources"] == {"output_stride": "config.json", "aspp_rates": "config.json",
                                            "aspp_channels": "file"}
    assert m3.pretrained_cfg["recipe_note"] is None
    np.testing.assert_array_equal(m3(X), m(X))
    # saved and reloaded: the settings and the origin's conventions travel in config.json
    back = mobilevit.from_pretrained(mobilevit.from_pretrained(path).save(str(tmp_path / "saved")))
    assert (back.cfg.output_stride, back.cfg.aspp_rates) == (8, (12, 24, 36))
    assert back.pretrained_cfg["sources"]["output_stride"] == "config.json"
    assert back.pretrained_cfg["align_corners"] is True
    assert back.pretrained_cfg["preprocess"]["name"] == "cvnets_v2_seg_bilinear"


def test_bad_overrides(v1_os8):
    _, path = v1_os8
    with pytest.raises(ValueError, match="output_stride"):
        mobilevit.from_pretrained(path, output_stride=4)
    with pytest.raises(ValueError, match="aspp_rates must be 3 ints"):
        mobilevit.from_pretrained(path, aspp_rates=(6, 12))
    with pytest.raises(ValueError, match="apply to a DeepLabv3"):
        mobilevit.from_pretrained(mobilevit.create_model("mobilevit_xxs", num_classes=3).state_dict(),
                                  output_stride=8)


def test_aux_head_is_checked_not_swallowed(v1_os8):
    ref, _ = v1_os8
    wrong = cvnets_state_dict(ref, 1, aux_inner=64)          # not the shape ml-cvnets builds
    with pytest.raises(mobilevit.StateDictError, match=r"seg_head\.aux_head\.0\.conv\.weight: expected"):
        mobilevit.from_pretrained(wrong)
    odd = cvnets_state_dict(ref, 1, extra={"seg_head.aux_head.3.block.conv.weight": torch.zeros(1)})
    with pytest.raises(mobilevit.StateDictError) as ei:
        mobilevit.from_pretrained(odd)
    assert ei.value.unexpected == ["seg_head.aux_head.3.block.conv.weight"]
    m = mobilevit.create_model("deeplabv3_mobilevit_xxs", output_stride=8, aspp_channels=512,
                               aspp_rates=(12, 24, 36))
    res = m.load_state_dict(odd, strict=False)
    assert res.unexpected_keys == ["seg_head.aux_head.3.block.conv.weight"] and len(res.ignored_keys) == 7
    # a classifier has no aux head: the keys are unexpected there
    cls = mobilevit.create_model("mobilevit_xxs", num_classes=21)
    r = cls.load_state_dict(cvnets_state_dict(ref, 1), strict=False)
    assert "seg_head.aux_head.0.conv.weight" in r.unexpected_keys and not r.ignored_keys


@pytest.mark.parametrize("n,os_,rates,recipe", [(150, 8, (12, 24, 36), "cvnets_v2_ade20k"),
                                                (21, 16, (6, 12, 18), "cvnets_v2_voc")])
def test_v2_recipes(n, os_, rates, recipe):
    ref = hf_seg(2, os_, rates, 512, n, seed=11)
    sd = cvnets_state_dict(ref, 2)
    m = mobilevit.from_pretrained(sd)
    assert (m.cfg.output_stride, m.cfg.aspp_rates, m.cfg.aspp_channels) == (os_, rates, 512)
    assert m.cfg.dilate_block_conv and m.pretrained_cfg["recipe"] == recipe
    assert m.pretrained_cfg["sources"]["output_stride"] == "assumed"
    assert m.pretrained_cfg["preprocess"]["name"] == "cvnets_v2_seg" and m.pretrained_cfg["align_corners"]
    plain = logits(ref, X)
    expected = logits(dilate_like_cvnets(ref, os_), X)
    assert np.abs(plain - expected).max() > 2e-4            # the block dilation matters (tolerance: 1e-4)
    assert_close(m(X), expected, 1e-4, f"ml-cvnets v2 {recipe}")


def test_v01_deeplab_and_hf_deeplab_origins():
    ref = hf_seg(1, 16, (6, 12, 18), 256, 21, seed=5)
    m = mobilevit.from_pretrained(cvnets_state_dict(ref, 1, aux=False))
    assert m.pretrained_cfg["recipe"] == "cvnets_v1_os16" and m.cfg.output_stride == 16
    assert m.pretrained_cfg["origin"] == "cvnets_deeplab" and m.pretrained_cfg["align_corners"] is False
    pre = mobilevit.predictor.preset_for(m)
    assert (pre.channel_order, pre.resize_size, pre.interpolation) == ("BGR", (512, 512), "cv2_linear")
    assert_close(m(X), logits(ref, X), 1e-4, "ml-cvnets v0.1 deeplab")
    h = mobilevit.from_pretrained(state_dict_numpy(ref))
    assert h.pretrained_cfg["origin"] == "hf_deeplab" and h.pretrained_cfg["preprocess"]["name"] == "hf_seg"


def test_hf_seg_preset_is_what_transformers_conversion_saves():
    from transformers import MobileViTImageProcessor
    img = np.random.default_rng(1).integers(0, 255, (300, 410, 3), dtype=np.uint8)
    proc = MobileViTImageProcessor(crop_size=512, size=544)        # convert_mlcvnets_to_pytorch.py
    expected = proc(images=img, return_tensors="np")["pixel_values"][0]
    got = mobilevit.preprocess.Preprocess.from_name("hf_seg")(img)
    np.testing.assert_array_equal(got, expected)


def test_cvnets_v2_presets_match_torchvision():
    tv = pytest.importorskip("torchvision.transforms.functional")
    from PIL import Image
    img = Image.fromarray(np.random.default_rng(2).integers(0, 255, (300, 410, 3), dtype=np.uint8))
    for name, mode in (("cvnets_v2_seg", tv.InterpolationMode.BICUBIC),
                       ("cvnets_v2_seg_bilinear", tv.InterpolationMode.BILINEAR)):
        expected = tv.pil_to_tensor(tv.resize(img, 512, interpolation=mode)).float().div(255.0).numpy()
        np.testing.assert_array_equal(mobilevit.preprocess.Preprocess.from_name(name)(img), expected)
    t = tv.center_crop(tv.resize(img, 288, interpolation=tv.InterpolationMode.BICUBIC), 256)
    # ml-cvnets' CenterCrop floors its offsets; torchvision rounds: 300 -> 288x393 has even margins
    np.testing.assert_array_equal(mobilevit.preprocess.Preprocess.from_name("cvnets_v2")(img),
                                  tv.pil_to_tensor(t).float().div(255.0).numpy())


def test_classifier_origins_select_presets():
    def origin_of(model, **kw):
        m = mobilevit.from_pretrained(model.state_dict(), **kw)
        return m.pretrained_cfg["origin"], m.pretrained_cfg["preprocess"]["name"], m.pretrained_cfg["preprocess_source"]

    v1 = mobilevit.create_model("mobilevit_xxs", num_classes=3)
    v2 = mobilevit.create_model("mobilevitv2_050", num_classes=3)
    assert origin_of(v1)[:2] == ("timm", "timm")
    assert origin_of(v2)[:2] == ("timm_v2", "timm_v2")
    cv1 = {_timm_to_cvnets(k, DEPTH): v for k, v in v1.state_dict().items()}
    cv2 = {_timm_to_cvnets(k, DEPTH, version=2): v for k, v in v2.state_dict().items()}
    m1, m2 = mobilevit.from_pretrained(cv1), mobilevit.from_pretrained(cv2)
    assert m1.pretrained_cfg["preprocess"]["name"] == "cvnets"        # v0.1: BGR, OpenCV bilinear
    p2 = mobilevit.predictor.preset_for(m2)                          # v0.2+: RGB, bicubic 288 -> 256
    assert (p2.name, p2.channel_order, p2.interpolation, p2.resize_shortest, p2.crop, p2.mean, p2.std) == \
        ("cvnets_v2", "RGB", "bicubic", 288, (256, 256), (0.0,) * 3, (1.0,) * 3)
    # the user overrides the origin's choice
    o = mobilevit.from_pretrained(cv2, preset="hf")
    assert o.pretrained_cfg["preprocess_source"] == "argument" and mobilevit.predictor.preset_for(o).name == "hf"
    with pytest.raises(TypeError, match="preset"):
        mobilevit.from_pretrained(cv2, preset=3)


def test_assumed_imagenet_names_are_said(tmp_path, capsys):
    from mobilevit.cli import main
    from PIL import Image
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(img)
    w = mobilevit.create_model("mobilevit_xxs", seed=1).save(str(tmp_path / "unlabelled"))   # 1000, no names
    m = mobilevit.from_pretrained(w)
    assert m.class_names is None
    pred = mobilevit.Predictor(m, top_k=1)
    row = next(pred.predict([str(img)]))
    assert pred.labels_assumed and pred.label_source == "assumed: ImageNet-1k" and row.labels_assumed
    assert row["labels"][0] == mobilevit.labels.imagenet_labels()[row["class_ids"][0]]
    assert set(row) == {"index"} | set(mobilevit.predictor.ROW_FIELDS)   # the schema is unchanged
    out = tmp_path / "o.jsonl"
    assert main(["predict", str(img), "--weights", w, "--output", str(out), "--top-k", "1"]) == 0
    meta = json.loads(out.read_text("utf-8").splitlines()[0])
    assert meta["labels_assumed"] is True and meta["label_source"] == "assumed: ImageNet-1k"
    assert "class names ASSUMED: ImageNet-1k" in capsys.readouterr().err
    # a checkpoint with its own names (LABEL_n included) is printed as it is, and not flagged
    named = mobilevit.create_model("mobilevit_xxs", seed=1)
    named.class_names = [f"LABEL_{i}" for i in range(1000)]
    w2 = named.save(str(tmp_path / "labelled"))
    out2 = tmp_path / "o2.jsonl"
    assert main(["predict", str(img), "--weights", w2, "--output", str(out2), "--top-k", "1"]) == 0
    lines = out2.read_text("utf-8").splitlines()
    meta2, row2 = json.loads(lines[0]), json.loads(lines[1])
    assert meta2["labels_assumed"] is False and meta2["label_source"] == "checkpoint"
    assert row2["labels"][0] == f"LABEL_{row2['class_ids'][0]}"
    assert "ASSUMED" not in capsys.readouterr().err
    assert mobilevit.predictor.class_names_for(mobilevit.create_model("mobilevit_xxs")) == \
        mobilevit.labels.imagenet_labels()
