"""The CLI as a new user meets it (issue 16): argparse-level validation with one-line errors and
exit code 2, --version, help for every option, --format, unique segment outputs, the header
line, relative row names, 'no images found', and the model names `info` lists."""
import csv
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import mobilevit
from mobilevit.cli import build_parser, main, mask_names, model_names, row_names
from mobilevit.default import SAMPLES_DIR, sample_images


def _png(path, h=40, w=40, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return str(path)


def _one_line_error(capsys, prefix):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(prefix), err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize("argv,words", [
    (["predict", "--preset", "bogus"], ["--preset", "bogus", "hf, hf_seg, timm"]),
    (["predict", "--preset", ""], ["--preset"]),
    (["predict", "--top-k", "0"], ["--top-k", ">= 1"]),
    (["predict", "--top-k", "-3"], ["--top-k"]),
    (["predict", "--top-k", "two"], ["--top-k", "two"]),
    (["predict", "--batch-size", "0"], ["--batch-size"]),
    (["predict", "--batch-size", "1.5"], ["--batch-size"]),
    (["predict", "--format", "xml"], ["--format", "xml"]),
    (["predict", "--bogus-flag"], ["--bogus-flag"]),
    (["segment", "x.png", "--weights", "w"], ["--output"]),
    (["segment", "x.png", "--weights", "w", "--output", "o", "--preset", "nope"], ["--preset", "nope"]),
])
def test_bad_arguments_are_one_line_exit_2(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    # unknown flags are reported by the top-level parser ("mobilevit: error: unrecognized arguments")
    line = _one_line_error(capsys, "mobilevit")
    assert ": error: " in line and "--help" in line
    for w in words:
        assert w in line, (w, line)


@pytest.mark.parametrize("name", ["preds.txt", "preds", "preds.parquet", "p.jsonl.bak", "PREDS.TSV"])
def test_output_extension_that_does_not_say_needs_format(tmp_path, name, capsys):
    out = tmp_path / name
    assert main(["predict", "--output", str(out)]) == 2
    assert "--format" in _one_line_error(capsys, "mobilevit predict: error:")
    assert not out.exists()
    assert main(["predict", "--output", str(out), "--format", "csv", "--top-k", "2"]) == 0
    rows = list(csv.reader(out.open(encoding="utf-8", newline="")))
    assert rows[0] == ["path", "label_1", "score_1", "class_id_1", "label_2", "score_2", "class_id_2", "error"]
    assert len(rows) == 1 + len(sample_images())
    assert all(r[1] == f"digit {r[3]}" for r in rows[1:])   # class ids are there and agree with labels


@pytest.mark.parametrize("ext,fmt", [(".jsonl", "jsonl"), (".JSONL", "jsonl"), (".ndjson", "jsonl"),
                                     (".json", "jsonl"), (".csv", "csv"), (".CSV", "csv")])
def test_extensions_that_say_the_format(tmp_path, ext, fmt):
    out = tmp_path / f"o{ext}"
    assert main(["predict", "--output", str(out), "--top-k", "1"]) == 0
    first = out.read_text("utf-8").splitlines()[0]
    if fmt == "jsonl":
        assert json.loads(first)["schema_version"] == mobilevit.predictor.SCHEMA_VERSION
    else:
        assert first.startswith("path,label_1,score_1,class_id_1")


def test_output_folder_problems_are_usage_errors(tmp_path, capsys):
    assert main(["predict", "--output", str(tmp_path / "no" / "such" / "dir" / "o.jsonl")]) == 2
    assert "does not exist" in _one_line_error(capsys, "mobilevit predict: error:")
    assert main(["predict", "--output", str(tmp_path)]) == 2
    assert "is a folder" in _one_line_error(capsys, "mobilevit predict: error:")
    f = tmp_path / "file"
    f.write_text("x")
    m = mobilevit.create_model("deeplabv3_mobilevit_xxs", num_classes=3)
    w = m.save(str(tmp_path / "seg"))
    assert main(["segment", _png(tmp_path / "a.png"), "--weights", w, "--output", str(f)]) == 2
    assert "is a file" in _one_line_error(capsys, "mobilevit segment: error:")


def test_jsonl_and_csv_on_stdout(capsys):
    assert main(["predict", "--format", "jsonl", "--top-k", "2"]) == 0
    meta, *rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert meta["schema_version"] == 2 and meta["top_k"] == 2 and meta["model"] == "mobilevit_xxs"
    assert [r["path"] for r in rows] == [os.path.join("samples", os.path.basename(p)) for p in sample_images()]
    assert all(set(r) == set(mobilevit.predictor.ROW_FIELDS) for r in rows)


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"mobilevit {mobilevit.__version__}"


def test_every_option_has_help():
    ap = build_parser()
    sub = next(a for a in ap._actions if a.__class__.__name__ == "_SubParsersAction")
    parsers = [ap] + list(sub.choices.values())
    assert set(sub.choices) == {"predict", "segment", "info"}
    for p in parsers:
        for a in p._actions:
            assert a.help and a.help.strip(), (p.prog, a.option_strings or a.dest)
    for choice in sub._choices_actions:
        assert choice.help


def test_header_line_says_what_ran(tmp_path, capsys):
    m = mobilevit.create_model("mobilevitv2_050", num_classes=4, seed=1)
    w = m.save(str(tmp_path / "w"))
    p = _png(tmp_path / "a.png")
    assert main(["predict", p, "--weights", w, "--preset", "timm", "--top-k", "3", "--threads", "1"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("mobilevit predict: model mobilevitv2_050 (4 classes)")
    for word in (f"weights {w}", "preprocessing timm", "top-3", "1 threads", f"isa {mobilevit.get_isa()}"):
        assert word in err[0], (word, err[0])
    assert main([]) == 2          # no command: help on stderr, exit 2


def test_default_run_names_samples_relatively(capsys):
    assert main(["predict", "--top-k", "1"]) == 0
    out, err = capsys.readouterr()
    names = [line.split("\t")[0] for line in out.splitlines()]
    assert names == [os.path.join("samples", os.path.basename(p)) for p in sample_images()]
    assert SAMPLES_DIR not in out and "site-packages" not in out
    assert "weights bundled default (digits)" in err.splitlines()[0]
    assert all(line.split("\t")[1].startswith(f"digit {os.path.basename(n)[6]} (") for n, line
               in zip(names, out.splitlines()))


def test_relative_inputs_stay_relative(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    os.makedirs("imgs/sub")
    _png("imgs/a.png")
    _png("imgs/sub/b.png", seed=1)
    assert main(["predict", "imgs", "--top-k", "1", "--output", "o.jsonl"]) == 0
    rows = [json.loads(line) for line in open("o.jsonl", encoding="utf-8")][1:]
    assert [r["path"] for r in rows] == [os.path.join("imgs", "a.png"), os.path.join("imgs", "sub", "b.png")]
    assert row_names([os.path.join(SAMPLES_DIR, "x.png"), "/abs/x.png", "rel/x.png"]) == \
        [os.path.join("samples", "x.png"), "/abs/x.png", "rel/x.png"]


def test_empty_folder_says_no_images_found(tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "deeper").mkdir(parents=True)
    (empty / "notes.txt").write_text("not an image")
    w = mobilevit.default.MODEL_FILE
    assert main(["predict", str(empty), "--weights", w]) == 1
    err = capsys.readouterr().err
    assert f"no images found in {str(empty)!r}" in err and "nothing to predict" in err
    full = tmp_path / "full"
    full.mkdir()
    _png(full / "a.png")
    assert main(["predict", str(empty), str(full), "--weights", w]) == 0       # one empty folder among others
    out, err = capsys.readouterr()
    assert "no images found" in err and len(out.splitlines()) == 1


def test_resume_refuses_a_schema_1_file(tmp_path, capsys):
    out = tmp_path / "old.jsonl"
    old = json.dumps({"input": "a.png", "predictions": [{"label": "x", "score": 1.0, "class_id": 0}],
                      "error": None}) + "\n"
    out.write_text(old)
    assert main(["predict", "--output", str(out), "--resume"]) == 2
    assert "schema" in capsys.readouterr().err and out.read_text() == old


@pytest.mark.parametrize("names", [
    ["img.bmp", "img.webp"],
    ["a/img.png", "b/img.png", "c/img.png"],
    ["img.png", "IMG.png", "img_png.png", "img.png"],
    ["x", "x.", "x.png", "x_png.jpg", "x_png_2.png"],
])
def test_mask_names_are_unique(names):
    got = mask_names(names)
    assert len({g.lower() for g in got}) == len(names)
    assert got[0] == os.path.splitext(os.path.basename(names[0]))[0]


def test_mask_names_unique_for_random_collisions():
    rng = np.random.default_rng(0)
    stems, exts = ["a", "A", "a_png", "a_png_2", "b"], [".png", ".PNG", ".webp", ""]
    for _ in range(50):
        names = [f"d{rng.integers(3)}/{stems[rng.integers(5)]}{exts[rng.integers(4)]}" for _ in range(12)]
        assert len({g.lower() for g in mask_names(names)}) == len(names), names


def test_segment_writes_one_mask_per_input(tmp_path, capsys):
    m = mobilevit.create_model("deeplabv3_mobilevit_xxs", num_classes=3, seed=2)
    w = m.save(str(tmp_path / "seg"))
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    img = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    for p in ("img.bmp", "img.webp", "a/img.png", "b/img.png"):
        Image.fromarray(img).save(src / p)
    out = tmp_path / "masks"
    assert main(["segment", str(src), "--weights", w, "--output", str(out)]) == 0
    stdout, err = capsys.readouterr()
    written = [line.split("\t")[1] for line in stdout.splitlines()]
    assert len(written) == 4 and len(set(written)) == 4
    assert sorted(os.listdir(out)) == sorted(os.path.basename(x) for x in written)
    assert err.splitlines()[0].startswith("mobilevit segment: model mobilevit_xxs")


def test_info_lists_every_buildable_name(capsys):
    assert main(["info"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("models: ")][0]
    listed = line[len("models: "):].split(", ")
    assert listed == model_names()
    assert set(mobilevit.list_models()) <= set(listed)
    seg = [n for n in listed if n.startswith("deeplabv3_")]
    assert {n[len("deeplabv3_"):] for n in seg} == set(mobilevit.list_models(segmentation=False))
    for n in seg:
        assert mobilevit.create_model(n, num_classes=2).cfg.head == "deeplabv3"
