"""mobilevit.labels.class_names (issue 13, item 6): a checkpoint's own labels
win (LABEL_n included, as transformers' pipeline prints them); ImageNet names
only for an unlabelled 1000-class checkpoint, flagged as assumed."""
import json

import pytest

from mobilevit.labels import class_names
from mobilevit.predictor import imagenet_labels


def test_id2label_string_and_int_keys():
    names, assumed = class_names({"id2label": {"1": "dog", "0": "cat", "2": "fish"}}, 3)
    assert names == ["cat", "dog", "fish"] and assumed is False
    assert class_names({"id2label": {0: "a", 1: "b"}}, 2) == (["a", "b"], False)


def test_label_placeholders_are_printed_as_transformers_does():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.MobileViTConfig(num_labels=3)  # no names given: LABEL_0..LABEL_2
    as_saved = json.loads(cfg.to_json_string())  # keys become strings, as in config.json
    assert class_names(as_saved, 3) == (["LABEL_0", "LABEL_1", "LABEL_2"], False)
    # even with 1000 classes, the checkpoint's own names beat the ImageNet guess
    big = {"id2label": {str(i): f"LABEL_{i}" for i in range(1000)}}
    names, assumed = class_names(big, 1000)
    assert names[7] == "LABEL_7" and not assumed


def test_imagenet_only_when_unlabelled_and_1000():
    names, assumed = class_names(None, 1000)
    assert names == imagenet_labels() and len(names) == 1000 and assumed is True
    assert class_names({}, 1000)[1] is True
    assert class_names({"architecture": "mobilevit_s"}, 10) == ([f"class_{i}" for i in range(10)], False)
    assert class_names(None, 0) == ([], False)


def test_timm_label_names_and_descriptions():
    cfg = {"label_names": ["n01", "n02"], "label_descriptions": {"n01": "tench", "n02": "goldfish"}}
    assert class_names(cfg, 2) == (["tench", "goldfish"], False)
    assert class_names({"label_names": ["x", "y"]}, 2) == (["x", "y"], False)
    with pytest.raises(ValueError, match="label_names has 2 names for 3 outputs"):
        class_names({"label_names": ["x", "y"]}, 3)
    with pytest.raises(ValueError, match="label_names must be a list of strings"):
        class_names({"label_names": "xy"}, 2)
    with pytest.raises(ValueError, match="label_descriptions"):
        class_names({"label_names": ["x"], "label_descriptions": ["x"]}, 1)


@pytest.mark.parametrize("id2label, match", [
    (["cat", "dog"], "id2label must be a mapping"),
    ({"0": "cat", "one": "dog"}, r"key 'one' is not a class index"),
    ({"0": "cat", True: "dog"}, "key True is not a class index"),
    ({"0": "cat", "-1": "dog"}, r"key '-1' is not a class index"),
    ({"0": "cat", "2": "dog"}, r"missing indices \[1\]"),
    ({"0": "cat", "1": "dog", "2": "fish"}, r"indices beyond the outputs \[2\]"),
    ({"0": "cat", "1": 5}, r"id2label\['1'\] must be a string"),
    ({"0": "cat", 0: "kitten", "1": "dog"}, "class index 0 appears twice"),
])
def test_malformed_id2label(id2label, match):
    with pytest.raises(ValueError, match=match):
        class_names({"id2label": id2label}, 2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        class_names(None, -1)
    with pytest.raises(ValueError, match="num_classes"):
        class_names(None, True)
    with pytest.raises(ValueError, match="config must be a mapping"):
        class_names([("id2label", {})], 2)
