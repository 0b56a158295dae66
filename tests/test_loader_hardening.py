"""Loaders never hang, never alias the file, and fail with typed, named errors (issue 12, items 2, 6).

* hostile pickles whose object graph is small but whose *expansion* is huge (memo-shared tuples as dict
  keys / set items / values, shared lists and dicts, long REDUCE chains, deep nesting) are refused or
  handled in well under a second; each call runs in a thread with a join timeout so a regression fails
  instead of hanging the suite;
* paths that are not regular files (FIFO, /dev/zero, directory, socket) are refused without being
  opened for reading, by ``load_checkpoint``, ``load_image`` and ``from_pretrained``;
* loaded arrays own their memory: truncating/rewriting the file afterwards changes nothing (run in a
  subprocess, so a SIGBUS fails the test instead of killing pytest); peak memory is ~1x the file;
* malformed ``config.json`` fields and safetensors header fields raise ``CheckpointError`` naming the
  file and the field (table-driven: every field is mutated, only the documented types may come out).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import mobilevit
from mobilevit.checkpoint import CheckpointError, load_checkpoint, read_torch_file
from mobilevit.checkpoint import pickle_vm as vm
from mobilevit.imageio import ImageLoadError, load_image
from test_checkpoint_io import P, f32, simple_zip, torch_like_zip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_ST = os.path.join(ROOT, "mobilevit", "data", "default_model.safetensors")
DEFAULT_JSON = os.path.join(ROOT, "mobilevit", "data", "default_model.json")


def bounded(fn, limit=3.0):
    """Run ``fn()`` in a daemon thread; fail if it does not finish within ``limit`` seconds.

    Returns ``(result, exception, seconds)``.
    """
    box = {}

    def run():
        t = time.perf_counter()
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported to the caller
            box["exc"] = e
        box["t"] = time.perf_counter() - t

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(limit)
    if th.is_alive():
        pytest.fail(f"call did not return within {limit} s (hang / exponential work)")
    return box.get("result"), box.get("exc"), box["t"]


def refused_or_ok(fn, limit=3.0, fast=1.0):
    res, exc, t = bounded(fn, limit)
    assert exc is None or isinstance(exc, CheckpointError), f"wrong exception type: {exc!r}"
    assert t < fast, f"took {t:.2f} s"
    return res, exc


# ----------------------------------------------------------------------------------------------------
# Hostile pickles: small files, huge expansions
# ----------------------------------------------------------------------------------------------------

def shared_tuple(p: P, width: int, depth: int, memo0: int = 0) -> int:
    """Push T_depth where T_0 = (1,) and T_{i+1} = (T_i,) * width, each level memoised once.

    The pickle grows by ~2*width bytes per level; the expanded tree has width**depth leaves.
    Leaves T_depth on the stack and returns the next free memo index.
    """
    p.i(1).op(b"\x85").op(b"q" + bytes([memo0]))
    for lvl in range(depth):
        p.op(b"0")  # pop the previous level (it is in the memo)
        p.mark()
        for _ in range(width):
            p.op(b"h" + bytes([memo0 + lvl]))
        p.tup().op(b"q" + bytes([memo0 + lvl + 1]))
    return memo0 + depth + 1


def shared_list(p: P, width: int, depth: int, memo0: int = 0) -> int:
    p.op(b"]").i(1).op(b"a").op(b"q" + bytes([memo0]))
    for lvl in range(depth):
        p.op(b"0").op(b"]").mark()
        for _ in range(width):
            p.op(b"h" + bytes([memo0 + lvl]))
        p.op(b"e").op(b"q" + bytes([memo0 + lvl + 1]))
    return memo0 + depth + 1


def shared_dict(p: P, depth: int, memo0: int = 0) -> int:
    p.op(b"}").op(b"q" + bytes([memo0]))
    for lvl in range(depth):
        p.op(b"0").op(b"}").mark()
        for k in ("a", "b", "c", "d"):
            p.s(k).op(b"h" + bytes([memo0 + lvl]))
        p.op(b"u").op(b"q" + bytes([memo0 + lvl + 1]))
    return memo0 + depth + 1


def storage_tensor(p: P, size_pusher, *, meta=None):
    """Push _rebuild_tensor_v2(storage '0' (6 floats), 0, <size_pusher()>, (1,), False, OD()[, meta])."""
    p.glob("torch._utils", "_rebuild_tensor_v2").mark()
    p.mark().s("storage").glob("torch", "FloatStorage").s("0").s("cpu").i(6).tup().op(b"Q")
    p.i(0)
    size_pusher()
    p.ints([1]).op(b"\x89").glob("collections", "OrderedDict").op(b")").op(b"R")
    if meta is not None:
        meta()
    p.tup().op(b"R")


def _key_bomb():                    # {T: 1} with T = 40**7 leaves
    p = P()
    p.op(b"}")
    shared_tuple(p, 40, 7)
    p.i(1).op(b"s")
    return p.stop().bytes()


def _key_bomb_in_state_dict():      # {'w': tensor, T: 1}: the key is rejected, not hashed 2**60 times
    p = P()
    p.op(b"}").s("w")
    storage_tensor(p, lambda: p.ints([6]))
    p.op(b"s")
    shared_tuple(p, 60, 6, memo0=10)
    p.i(1).op(b"s")
    return p.stop().bytes()


def _frozenset_bomb():
    p = P()
    p.mark()
    shared_tuple(p, 40, 7)
    p.op(b"\x91")
    return p.stop().bytes()


def _set_bomb():
    p = P()
    p.op(b"\x8f").mark()
    shared_tuple(p, 40, 7)
    p.op(b"\x90")
    return p.stop().bytes()


def _pid_bomb():                    # BINPERSID of (T,): the error message must not repr T
    p = P()
    shared_tuple(p, 40, 7)
    p.op(b"\x85").op(b"Q")
    return p.stop().bytes()


def _size_bomb():                   # tensor size (T,): the error message must not repr T
    p = P()
    p.op(b"}").s("w")
    storage_tensor(p, lambda: (shared_tuple(p, 40, 7, memo0=20), p.op(b"\x85")))
    p.op(b"s")
    return p.stop().bytes()


def _meta_bomb():                   # _rebuild_tensor_v2 metadata argument = T
    p = P()
    p.op(b"}").s("w")
    storage_tensor(p, lambda: p.ints([6]), meta=lambda: shared_tuple(p, 40, 7, memo0=20))
    p.op(b"s")
    return p.stop().bytes()


def _call_chain(n=5000):            # {'w': R(R(R(...R(g, ())...)))}: 2 bytes per level
    p = P()
    p.op(b"}").s("w").glob("mymod", "Thing")
    for _ in range(n):
        p.op(b")").op(b"R")
    p.op(b"s")
    return p.stop().bytes()


def _values_shared(kind):           # {'state_dict': {'w': tensor}, 'junk': <shared bomb>}
    def build():
        p = P()
        p.op(b"}").s("state_dict").op(b"}").s("w")
        storage_tensor(p, lambda: p.ints([6]))
        p.op(b"s").op(b"s").s("junk")
        if kind == "tuple":
            shared_tuple(p, 40, 7, memo0=20)
        elif kind == "list":
            shared_list(p, 40, 7, memo0=20)
        else:
            shared_dict(p, 30, memo0=20)
        p.op(b"s")
        return p.stop().bytes()
    return build


def _deep_value(kind):             # {'w': ((((...)))) } 100k deep (1 byte per level), or lists
    def build():
        p = P()
        p.op(b"}").s("w")
        if kind == "tuple":
            p.op(b")" + b"\x85" * 100_000)
        else:
            p.op(b"(" * 900 + b"l" * 900)
        p.op(b"s")
        return p.stop().bytes()
    return build


HOSTILE_PICKLES = {
    "shared-tuple-dict-key": _key_bomb,
    "shared-tuple-key-next-to-tensor": _key_bomb_in_state_dict,
    "shared-tuple-in-frozenset": _frozenset_bomb,
    "shared-tuple-in-set": _set_bomb,
    "shared-tuple-persistent-id": _pid_bomb,
    "shared-tuple-tensor-size": _size_bomb,
    "shared-tuple-tensor-metadata": _meta_bomb,
    "reduce-chain": _call_chain,
    "shared-tuple-value": _values_shared("tuple"),
    "shared-list-value": _values_shared("list"),
    "shared-dict-value": _values_shared("dict"),
    "deep-tuple-value": _deep_value("tuple"),
    "deep-list-value": _deep_value("list"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_PICKLES))
@pytest.mark.parametrize("reader", ["load_checkpoint", "read_torch_file", "read_tree"])
def test_hostile_pickles_are_bounded(tmp_path, name, reader):
    pkl = HOSTILE_PICKLES[name]()
    assert len(pkl) < 400_000, len(pkl)
    path = torch_like_zip(tmp_path / "h.pt", pkl, {"0": f32(np.arange(6))})
    fn = {"load_checkpoint": lambda: load_checkpoint(path, return_info=True),
          "read_torch_file": lambda: read_torch_file(path),
          "read_tree": lambda: read_torch_file(path, materialize=False)}[reader]
    res, exc = refused_or_ok(fn)
    if exc is not None:
        assert len(str(exc)) < 2000, "error message not bounded"
    if reader == "load_checkpoint" and exc is None:
        sd, info = res
        assert list(sd) == ["w"] and sd["w"].tolist() == list(range(6))
        repr(info)  # the info object must be cheap to print too


@pytest.mark.parametrize("pkl", [
    P().op(b"X" + struct.pack("<I", 0xFFFFFFF0)).stop().bytes(),                 # 4 GB string claim
    P().op(b"B" + struct.pack("<I", 0xFFFFFFF0)).stop().bytes(),                 # 4 GB bytes claim
    P().op(b"\x8b" + struct.pack("<i", 0x7FFFFFFF)).stop().bytes(),              # LONG4 2 GB int
    P().op(b"\x95" + struct.pack("<Q", 1 << 62)).op(b"N").stop().bytes(),         # FRAME claim
    P().op(b"N").op(b"r" + struct.pack("<I", 0xFFFFFFFF)).op(b"0").op(b"j" + struct.pack("<I", 0xFFFFFFFF)).stop().bytes(),
    P().op(b"]").op(b"q\x00").op(b"(" + b"h\x00" * 2000).op(b"e").stop().bytes(),  # DUP-style growth
    P().op(b"N").op(b"2" * 1000).stop().bytes(),                                 # DUP itself
], ids=["binunicode", "binbytes", "long4", "frame", "long-binput", "appends-memo", "dup"])
def test_huge_claims_and_growth_stay_bounded(pkl):
    refused_or_ok(lambda: vm.unpickle(pkl), fast=0.5)


def test_composite_keys_are_capped_but_normal_ones_work():
    # A plain tuple key (e.g. an optimizer's (group, index)) keeps working.
    p = P().op(b"}").ints([1, 2]).s("x").op(b"s").stop()
    assert vm.unpickle(p.bytes())[0] == {(1, 2): "x"}
    # Too many leaves in one key: refused by size, not by depth.
    p = P().op(b"}")
    shared_tuple(p, 2, 7)  # 128 leaves, depth 7
    p.i(1).op(b"s")
    with pytest.raises(CheckpointError, match="key"):
        vm.unpickle(p.stop().bytes())


# ----------------------------------------------------------------------------------------------------
# Non-regular files are refused without being opened for reading
# ----------------------------------------------------------------------------------------------------

def _fifo(path):
    os.mkfifo(path)
    return path


def _special_paths(tmp_path):
    fifo = _fifo(tmp_path / "fifo.pt")
    sock_path = str(tmp_path / "sock.pt")
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock_path)
    d = tmp_path / "dir.pt"
    d.mkdir()
    return {"fifo": str(fifo), "socket": sock_path, "dev-zero": "/dev/zero", "directory": str(d)}, s


@pytest.mark.parametrize("kind", ["fifo", "socket", "dev-zero", "directory"])
def test_load_checkpoint_refuses_special_files(tmp_path, kind):
    paths, s = _special_paths(tmp_path)
    try:
        _, exc, _ = bounded(lambda: load_checkpoint(paths[kind]), 3.0)
        assert isinstance(exc, CheckpointError), repr(exc)
        assert "regular file" in str(exc) and paths[kind] in str(exc)
    finally:
        s.close()


@pytest.mark.parametrize("kind", ["fifo", "socket", "dev-zero", "directory"])
def test_load_image_refuses_special_files(tmp_path, kind):
    paths, s = _special_paths(tmp_path)
    try:
        _, exc, _ = bounded(lambda: load_image(paths[kind]), 3.0)
        assert isinstance(exc, ImageLoadError), repr(exc)
        assert paths[kind] in str(exc)
    finally:
        s.close()


@pytest.mark.parametrize("what", ["file", "folder-weights", "folder-config", "folder-preprocessor"])
def test_from_pretrained_refuses_fifos(tmp_path, what):
    if what == "file":
        target = str(_fifo(tmp_path / "w.safetensors"))
    else:
        target = str(tmp_path / "m")
        os.mkdir(target)
        names = {"folder-weights": "model.safetensors", "folder-config": "config.json",
                 "folder-preprocessor": "preprocessor_config.json"}
        if what != "folder-weights":
            shutil.copy(DEFAULT_ST, os.path.join(target, "model.safetensors"))
        _fifo(os.path.join(target, names[what]))
    _, exc, _ = bounded(lambda: mobilevit.from_pretrained(target), 3.0)
    assert isinstance(exc, CheckpointError), repr(exc)
    assert "regular file" in str(exc)


def test_symlinks_to_regular_files_still_work(tmp_path):
    real = simple_zip(tmp_path)
    link = tmp_path / "link.pt"
    os.symlink(real, link)
    assert load_checkpoint(link)["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    img = os.path.join(ROOT, "mobilevit", "data", "samples", "digit_0_idx12.png")
    os.symlink(img, tmp_path / "img.png")
    assert load_image(tmp_path / "img.png").mode == "RGB"
    os.symlink(DEFAULT_ST, tmp_path / "m.safetensors")
    assert mobilevit.from_pretrained(tmp_path / "m.safetensors").cfg.name == "mobilevit_xxs"


# ----------------------------------------------------------------------------------------------------
# Loaded arrays own their memory
# ----------------------------------------------------------------------------------------------------

_ALIAS_SCRIPT = textwrap.dedent("""
    import os, sys, shutil
    import numpy as np
    sys.path.insert(0, {root!r})
    import mobilevit
    from mobilevit.checkpoint import load_checkpoint
    path, kind = sys.argv[1], sys.argv[2]
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    if kind == "model":
        m = mobilevit.from_pretrained(path)
        y0 = m(x).copy()
        sd0 = {{k: np.array(v, copy=True) for k, v in m.state_dict().items()}}
    else:
        sd = load_checkpoint(path)
        sd0 = {{k: np.array(v, copy=True) for k, v in sd.items()}}
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(0)
    if kind == "model":
        y1 = m(x)
        cur = m.state_dict()
    else:
        cur = sd
    for k, v in sd0.items():          # untouched pages of a file mapping would SIGBUS here
        assert np.array_equal(np.asarray(cur[k]), v), k
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    for k, v in sd0.items():
        assert np.array_equal(np.asarray(cur[k]), v), k
    if kind == "model":
        assert np.array_equal(m(x), y0)
    print("OK")
""")


@pytest.mark.parametrize("kind", ["model", "torch-zip"])
def test_loaded_arrays_do_not_alias_the_file(tmp_path, kind):
    if kind == "model":
        path = tmp_path / "m.safetensors"
        shutil.copy(DEFAULT_ST, path)
        mode = "model"
    else:
        path = simple_zip(tmp_path)
        mode = "sd"
    script = tmp_path / "alias.py"
    script.write_text(_ALIAS_SCRIPT.format(root=ROOT))
    r = subprocess.run([sys.executable, str(script), str(path), mode], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "OK" in r.stdout, (r.returncode, r.stderr[-2000:])


_PEAK_SCRIPT = textwrap.dedent("""
    import resource, sys
    import numpy as np
    sys.path.insert(0, {root!r})
    from mobilevit.checkpoint import load_checkpoint
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sd = load_checkpoint(sys.argv[1])
    total = sum(float(v.sum()) for v in sd.values())   # touch every page
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * 1024)
""")


def test_peak_memory_is_about_one_file(tmp_path):
    from mobilevit.checkpoint import save_safetensors
    n = 48 << 20
    path = tmp_path / "big.safetensors"
    save_safetensors(path, {"a": np.ones(n // 8, np.float32), "b": np.ones(n // 8, np.float32)})
    script = tmp_path / "peak.py"
    script.write_text(_PEAK_SCRIPT.format(root=ROOT))
    r = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    grew = int(r.stdout.split()[-1])
    size = os.path.getsize(path)
    assert grew < 1.5 * size, f"peak grew by {grew / size:.2f} x the file size"


# ----------------------------------------------------------------------------------------------------
# Typed, named errors: config.json and safetensors headers, field by field
# ----------------------------------------------------------------------------------------------------

_CONFIG_MUTATIONS = [
    # (field, bad value)
    ("architecture", 5), ("architecture", "resnet50"), ("model_type", ["mobilevit"]),
    ("num_classes", "ten"), ("num_classes", -1), ("num_classes", 2 ** 40), ("num_classes", 1.5),
    ("num_labels", "ten"), ("num_labels", True),
    ("id2label", ["a", "b"]), ("id2label", {"zero": "a"}), ("id2label", {"0": 1}),
    ("id2label", {str(2 ** 40): "a"}),
    ("label2id", ["a"]), ("label2id", {"a": "0"}),
    ("label_names", "abc"), ("label_names", [1, 2]), ("class_names", {"a": 1}),
    ("hidden_sizes", None), ("hidden_sizes", "big"), ("hidden_sizes", [1.5]),
    ("neck_hidden_sizes", [16, "x"]), ("neck_hidden_sizes", {}), ("neck_hidden_sizes", [2 ** 31] * 7),
    ("image_size", 1e6), ("image_size", 10 ** 6), ("image_size", "256"), ("image_size", [256, "a"]),
    ("patch_size", 0), ("num_channels", "3"), ("num_attention_heads", -4),
    ("width_multiplier", "one"), ("width_multiplier", 1e300), ("width_multiplier", 0),
    ("output_stride", 7), ("output_stride", "16"), ("atrous_rates", [6, "12", 18]),
    ("atrous_rates", 6), ("odd_size", "sideways"), ("odd_size", 1),
    ("mlp_ratio", "2"), ("layer_norm_eps", []), ("expand_ratio", None),
    ("pretrained_cfg", "cfg"), ("pretrained_cfg", {"input_size": [3, "a", 256]}),
    ("preprocess", 7), ("preprocess", ["a"]),
]


def _folder(tmp_path, cfg_text):
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    shutil.copy(DEFAULT_ST, d / "model.safetensors")
    (d / "config.json").write_text(cfg_text)
    return d


def _expect_named(fn, *needles):
    _, exc, _ = bounded(fn, 10.0)
    assert isinstance(exc, CheckpointError), f"{exc!r} is not a CheckpointError"
    for n in needles:
        assert n in str(exc), (n, str(exc))


@pytest.mark.parametrize("field,value", _CONFIG_MUTATIONS,
                         ids=[f"{f}={json.dumps(v)[:20]}" for f, v in _CONFIG_MUTATIONS])
def test_config_json_field_errors(tmp_path, field, value):
    cfg = json.loads(open(DEFAULT_JSON).read())
    cfg[field] = value
    d = _folder(tmp_path, json.dumps(cfg))
    _expect_named(lambda: mobilevit.from_pretrained(d), "config.json", field)


@pytest.mark.parametrize("text", ["not json", "[1, 2]", "null", '"s"', "{" * 100_000, "\xff\xfe",
                                  '{"num_classes": 1' + "0" * 5000 + "}"],
                         ids=["garbage", "list", "null", "string", "deep", "not-utf8", "huge-int"])
def test_config_json_not_an_object(tmp_path, text):
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(DEFAULT_ST, d / "model.safetensors")
    (d / "config.json").write_bytes(text.encode("latin-1"))
    _expect_named(lambda: mobilevit.from_pretrained(d), "config.json")


def test_embedded_mobilevit_config_is_validated(tmp_path):
    from mobilevit.checkpoint import read_safetensors, read_safetensors_metadata, save_safetensors
    sd = read_safetensors(DEFAULT_ST)
    meta = dict(read_safetensors_metadata(DEFAULT_ST))
    cfg = json.loads(open(DEFAULT_JSON).read())
    meta["mobilevit_config"] = json.dumps(cfg)
    for field, value in (("num_classes", "ten"), ("label_names", 5), ("architecture", [1])):
        bad = dict(cfg, **{field: value})
        path = tmp_path / f"{field}.safetensors"
        save_safetensors(path, sd, dict(meta, mobilevit_config=json.dumps(bad)))
        _expect_named(lambda: mobilevit.from_pretrained(path), str(path), "mobilevit_config", field)
    path = tmp_path / "garbage.safetensors"
    save_safetensors(path, sd, dict(meta, mobilevit_config="{not json"))
    _expect_named(lambda: mobilevit.from_pretrained(path), "mobilevit_config")


def _st_blob(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


_GOOD_HEADER = {"__metadata__": {"format": "pt"},
                "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}
_ST_MUTATIONS = [
    ("__metadata__", ["a"]), ("__metadata__", {"a": 1}), ("__metadata__", "x"),
    ("__metadata__", {"a": {"b": "c"}}),
    ("dtype", 32), ("dtype", None), ("dtype", ["F32"]), ("dtype", "F33"),
    ("shape", [-1, 3]), ("shape", [2.0, 3]), ("shape", [True, 3]), ("shape", "2,3"), ("shape", None),
    ("shape", [0, 2 ** 62]), ("shape", [2 ** 31, 0]), ("shape", [0] * 100),
    ("data_offsets", "0-24"), ("data_offsets", [0.0, 24]), ("data_offsets", [0, 24, 48]),
    ("data_offsets", {"begin": 0}), ("data_offsets", [False, 24]), ("data_offsets", None),
    ("info", ["F32"]), ("info", None),
]


@pytest.mark.parametrize("field,value", _ST_MUTATIONS,
                         ids=[f"{f}={json.dumps(v)[:20]}" for f, v in _ST_MUTATIONS])
def test_safetensors_header_field_errors(tmp_path, field, value):
    header = json.loads(json.dumps(_GOOD_HEADER))
    if field == "__metadata__":
        header["__metadata__"] = value
    elif field == "info":
        header["w"] = value
    else:
        header["w"][field] = value
        if field == "shape" and isinstance(value, list) and 0 in value:
            header["w"]["data_offsets"] = [0, 0]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(_st_blob(header, b"" if isinstance(header["w"], dict) and header["w"].get("data_offsets") == [0, 0]
                              else f32(np.arange(6))))
    for fn in (lambda: load_checkpoint(path), lambda: mobilevit.checkpoint.read_safetensors(path),
               lambda: mobilevit.from_pretrained(path)):
        _expect_named(fn, str(path), field if field != "info" else "'w'")


@pytest.mark.parametrize("shape", [[0, 2 ** 62], [2 ** 31, 0], [0, 2 ** 31]])
def test_pickle_tensor_dims_beyond_int32_are_refused(tmp_path, shape):
    from test_checkpoint_io import tensor_pickle
    pkl = tensor_pickle({"w": ("FloatStorage", "0", 6, 0, tuple(shape), (1,) * len(shape))})
    path = torch_like_zip(tmp_path / "d.pt", pkl, {"0": f32(np.arange(6))})
    _expect_named(lambda: load_checkpoint(path), str(path), "size")


def test_missing_qkv_part_strict_and_partial(tmp_path):
    """HF names with one of query/key/value missing: a clear error (strict) or a partial load."""
    from mobilevit.checkpoint import read_safetensors, save_safetensors
    from mobilevit.keymap import to_timm
    torch = pytest.importorskip("torch")  # noqa: F841 - reference models need it
    from reference_models import hf_model
    hf = hf_model("mobilevit_xxs", seed=3, num_labels=4)
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    path = tmp_path / "hf" / "model.safetensors"
    sd = read_safetensors(path)
    victim = next(k for k in sd if k.endswith("attention.attention.value.weight"))
    sd = {k: v for k, v in sd.items() if k != victim}
    save_safetensors(path, sd)
    with pytest.raises(CheckpointError, match="value"):
        to_timm(sd)
    _expect_named(lambda: mobilevit.from_pretrained(tmp_path / "hf"), "value")
    m = mobilevit.from_pretrained(tmp_path / "hf", strict=False)
    assert m.num_classes == 4
