"""Tests for the torch-free checkpoint readers (mobilevit.checkpoint).

Positive tests write real files with torch / safetensors and compare every tensor exactly.  Hostile
tests follow the adversarial checklist in ecosystem-and-safety.md C.6 (items 1-18, 21); each builds the
bad input by hand and asserts the specific rule that rejects it.
"""

import argparse
import io
import json
import math
import os
import random
import struct
import subprocess
import sys
import tarfile
import textwrap
import tracemalloc
import zipfile

import numpy as np
import pytest

from mobilevit.checkpoint import (
    CheckpointError, UnsafeCheckpointError, detect_format, extract_state_dict, load_checkpoint,
    read_safetensors, read_safetensors_metadata, read_torch_file, save_safetensors,
)
from mobilevit.checkpoint import pickle_vm
from mobilevit.checkpoint.pickle_vm import Call, Limits, TensorRef, UnsupportedTensor


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


def _np(t):
    """A torch tensor as the NumPy array our reader must return (bf16 widened to f32)."""
    torch = _torch()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.detach().cpu().contiguous().numpy()


def assert_same(ours: dict, theirs: dict, ordered=True):
    assert (list(ours) if ordered else sorted(ours)) == (list(theirs) if ordered else sorted(theirs))
    for k, t in theirs.items():
        want = _np(t)
        got = ours[k]
        assert isinstance(got, np.ndarray), k
        assert got.dtype == want.dtype, (k, got.dtype, want.dtype)
        assert got.shape == want.shape, (k, got.shape, want.shape)
        # Bit-exact (NaN-safe) comparison.
        assert np.array_equal(got.view(np.uint8) if got.dtype == bool else got, want, equal_nan=True), k


class P:
    """A tiny pickle assembler for hand-made (hostile) pickles."""

    def __init__(self, proto=2):
        self.b = bytearray()
        if proto is not None:
            self.b += bytes([0x80, proto])

    def op(self, raw: bytes):
        self.b += raw
        return self

    def glob(self, mod, name):
        return self.op(b"c" + f"{mod}\n{name}\n".encode())

    def s(self, text):
        e = text.encode()
        return self.op(b"X" + struct.pack("<I", len(e)) + e)

    def i(self, v):
        if 0 <= v < 256:
            return self.op(b"K" + bytes([v]))
        if -(1 << 31) <= v < (1 << 31):
            return self.op(b"J" + struct.pack("<i", v))
        n = (v.bit_length() + 8) // 8
        return self.op(b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True))

    def ints(self, vals):
        self.mark()
        for v in vals:
            self.i(v)
        return self.tup()

    def mark(self):
        return self.op(b"(")

    def tup(self):
        return self.op(b"t")

    def reduce(self):
        return self.op(b"R")

    def persid(self):
        return self.op(b"Q")

    def stop(self):
        return self.op(b".")

    def bytes(self):
        return bytes(self.b)


def tensor_pickle(entries, *, wrapper=None, storage_module="torch", pid_len=5):
    """data.pkl for ``{name: (storage_class, key, numel, offset, size, stride)}``."""
    p = P()
    if wrapper:
        p.op(b"}").s(wrapper)
    p.op(b"}").mark()
    for name, (cls, key, numel, offset, size, stride) in entries.items():
        p.s(name).glob("torch._utils", "_rebuild_tensor_v2").mark()
        p.mark().s("storage").glob(storage_module, cls).s(key).s("cpu").i(numel)
        if pid_len == 6:
            p.op(b"N")
        p.tup().persid()
        p.i(offset).ints(size).ints(stride).op(b"\x89")
        p.glob("collections", "OrderedDict").op(b")").reduce()
        p.tup().reduce()
    p.op(b"u")
    if wrapper:
        p.op(b"s")
    return p.stop().bytes()


def torch_like_zip(path, data_pkl, records, *, byteorder=b"little", prefix="archive",
                   deflate=(), extra_entries=()):
    """A zip laid out like torch.save output (stored records) from explicit parts."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", data_pkl)
        if byteorder is not None:
            z.writestr(f"{prefix}/byteorder", byteorder)
        for key, raw in records.items():
            method = zipfile.ZIP_DEFLATED if key in deflate else zipfile.ZIP_STORED
            z.writestr(f"{prefix}/data/{key}", raw, compress_type=method)
        z.writestr(f"{prefix}/version", b"3\n")
        for name, raw in extra_entries:
            z.writestr(name, raw)
    return path


def f32(values):
    return np.asarray(values, "<f4").tobytes()


def simple_zip(tmp_path, name="w.pt", **kw):
    """A valid hand-made checkpoint: {'w': float32[2, 3]} = arange(6)."""
    pkl = tensor_pickle({"w": ("FloatStorage", "0", 6, 0, (2, 3), (3, 1))})
    return torch_like_zip(tmp_path / name, pkl, {"0": f32(np.arange(6))}, **kw)


def expect_error(src, match, exc=CheckpointError, loader=None):
    loader = loader or load_checkpoint
    with pytest.raises(exc, match=match):
        loader(src)


# ----------------------------------------------------------------------------------------------------
# real files written by torch
# ----------------------------------------------------------------------------------------------------

def _dtype_dict():
    torch = _torch()
    g = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(3, 5, generator=g),
        "f16": torch.randn(4, 3, generator=g).half(),
        "bf16": torch.randn(2, 7, generator=g).bfloat16(),
        "f64": torch.randn(6, generator=g).double(),
        "i64": torch.arange(-5, 5),
        "i32": torch.arange(7, dtype=torch.int32),
        "i8": torch.arange(-3, 3, dtype=torch.int8),
        "u8": torch.arange(200, 210, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "conv": torch.randn(8, 3, 3, 3, generator=g),
    }


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_torch_save_dtypes_exact(tmp_path, zip_format):
    torch = _torch()
    sd = _dtype_dict()
    path = tmp_path / "ckpt.bin"
    torch.save(sd, path, _use_new_zipfile_serialization=zip_format)
    assert detect_format(path) == ("zip" if zip_format else "legacy")
    ours = load_checkpoint(path)
    assert_same(ours, sd)
    assert ours["bf16"].dtype == np.float32 and ours["f16"].dtype == np.float16
    assert ours["i64"].dtype == np.int64


def test_zip_tensors_are_zero_copy_and_private(tmp_path):
    torch = _torch()
    path = tmp_path / "m.pt"
    torch.save({"w": torch.arange(16.0)}, path)
    w = load_checkpoint(path)["w"]
    assert not w.flags.owndata and w.base is not None  # a view of the file mapping
    w[0] = 123.0  # copy-on-write mapping: writable, the file is untouched
    assert load_checkpoint(path)["w"][0] == 0.0


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_views_offsets_strides_shared_storage(tmp_path, zip_format):
    torch = _torch()
    base = torch.arange(48.0).reshape(6, 8)
    sd = {
        "base": base,
        "transposed": base.t(),
        "offset_slice": base[2:, 3:7],
        "step": base[:, ::3],
        "row": base[4],
        "expanded": torch.arange(3.0).reshape(3, 1).expand(3, 5),
        "tied_a": base[1],
        "bf16_view": torch.arange(20.0).bfloat16().reshape(4, 5)[1:, 1::2],
        "half_t": torch.arange(12.0).half().reshape(3, 4).t(),
    }
    sd["tied_b"] = sd["tied_a"]
    path = tmp_path / "views.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=zip_format)
    ours = load_checkpoint(path)
    assert_same(ours, sd)
    for k in ("transposed", "step", "expanded", "bf16_view", "half_t"):
        assert ours[k].flags.c_contiguous, k
    if zip_format:  # contiguous views share the one storage record, no copies
        assert np.shares_memory(ours["base"], ours["row"])
        assert np.shares_memory(ours["tied_a"], ours["tied_b"])


def _training_checkpoint():
    torch = _torch()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(5, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(1, 3, 7, 7)).sum().backward()
    opt.step()
    ema = {k: v.clone() + 1 for k, v in model.state_dict().items()}
    ckpt = {
        "epoch": 7,
        "arch": "mobilevit_s",
        "args": argparse.Namespace(lr=0.1, model="mobilevit_s", sched=["cosine", 3]),
        "state_dict": model.state_dict(),
        "optimizer": opt.state_dict(),
        "state_dict_ema": ema,
        "metric": 0.5,
    }
    return model, ckpt


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_training_checkpoint_with_namespace(tmp_path, zip_format):
    torch = _torch()
    model, ckpt = _training_checkpoint()
    path = tmp_path / "train.pth.tar"
    torch.save(ckpt, path, _use_new_zipfile_serialization=zip_format)
    sd, info = load_checkpoint(path, return_info=True)
    assert_same(sd, model.state_dict())
    assert info.selected_path == ("state_dict",)
    assert "argparse.Namespace" in info.ignored_globals  # C.6 #2: inert, reported
    assert_same(load_checkpoint(path, prefer_ema=True), ckpt["state_dict_ema"])
    assert_same(load_checkpoint(path, key="state_dict_ema"), ckpt["state_dict_ema"])
    with pytest.raises(CheckpointError, match="'nope' not found"):
        load_checkpoint(path, key="nope")
    # The whole tree is readable; the Namespace stays an inert marker with its state.
    tree = read_torch_file(path)
    assert tree["epoch"] == 7 and tree["metric"] == 0.5
    args = tree["args"]
    assert isinstance(args, Call) and args.callable_name == "argparse.Namespace"
    assert args.state == {"lr": 0.1, "model": "mobilevit_s", "sched": ["cosine", 3]}
    mom = tree["optimizer"]["state"][0]["momentum_buffer"]
    assert np.array_equal(mom, ckpt["optimizer"]["state"][0]["momentum_buffer"].numpy())


def test_ddp_and_compile_prefixes_are_stripped(tmp_path):
    torch = _torch()
    sd = {"conv.weight": torch.ones(2, 2), "bn.running_mean": torch.zeros(2)}
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "ddp.pt")
    torch.save({f"_orig_mod.module.{k}": v for k, v in sd.items()}, tmp_path / "both.pt")
    torch.save({"module.a": torch.ones(1), "b": torch.ones(1)}, tmp_path / "partial.pt")
    ours, info = load_checkpoint(tmp_path / "ddp.pt", return_info=True)
    assert_same(ours, sd)
    assert info.stripped_prefixes == ("module.",)
    assert_same(load_checkpoint(tmp_path / "both.pt"), sd)
    assert list(load_checkpoint(tmp_path / "partial.pt")) == ["module.a", "b"]  # not all prefixed


def test_protocol4_parameters_and_new_dtypes(tmp_path):
    torch = _torch()
    sd = {"p": torch.nn.Parameter(torch.randn(3, 2)), "u16": torch.arange(5).to(torch.uint16),
          "buf": torch.randn(4)}
    torch.save(sd, tmp_path / "p4.pt", pickle_protocol=4)
    assert_same(load_checkpoint(tmp_path / "p4.pt"), sd)
    # float8 (via _rebuild_tensor_v3) is recognised and refused by name only when requested.
    torch.save({"state_dict": {"w": torch.ones(2)}, "extra": torch.zeros(2, dtype=torch.float8_e4m3fn)},
               tmp_path / "f8.pt")
    assert_same(load_checkpoint(tmp_path / "f8.pt"), {"w": torch.ones(2)})
    tree = read_torch_file(tmp_path / "f8.pt")
    assert isinstance(tree["extra"], UnsupportedTensor) and "float8_e4m3fn" in tree["extra"].reason
    with pytest.raises(CheckpointError, match=r"'extra'.*float8_e4m3fn"):
        extract_state_dict({"extra": tree["extra"]})


def test_file_objects_bytes_and_content_detection(tmp_path):
    torch = _torch()
    sd = {"a": torch.randn(3, 3), "b": torch.arange(4)}
    # Misleading extensions: detection is by content only.
    torch.save(sd, tmp_path / "weights.safetensors")
    from safetensors.torch import save_file
    save_file(sd, tmp_path / "weights.pt")
    assert detect_format(tmp_path / "weights.safetensors") == "zip"
    assert detect_format(tmp_path / "weights.pt") == "safetensors"
    for p in (tmp_path / "weights.safetensors", tmp_path / "weights.pt"):
        assert_same(load_checkpoint(p), sd, ordered=False)
        with open(p, "rb") as f:
            assert_same(load_checkpoint(f), sd, ordered=False)
        assert_same(load_checkpoint(io.BytesIO(p.read_bytes())), sd, ordered=False)
        assert_same(load_checkpoint(p.read_bytes()), sd, ordered=False)


# ----------------------------------------------------------------------------------------------------
# safetensors
# ----------------------------------------------------------------------------------------------------

def test_safetensors_written_by_reference_package(tmp_path):
    torch = _torch()
    from safetensors.torch import save_file
    sd = {k: v for k, v in _dtype_dict().items()}
    save_file(sd, tmp_path / "ref.safetensors", metadata={"format": "pt"})
    ours = read_safetensors(tmp_path / "ref.safetensors")
    assert_same({k: ours[k] for k in sd}, sd)
    assert read_safetensors_metadata(tmp_path / "ref.safetensors") == {"format": "pt"}


def test_safetensors_our_writer_roundtrip_and_reference_reader(tmp_path):
    from safetensors.numpy import load_file
    rng = np.random.default_rng(0)
    arrays = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "h": rng.standard_normal(5).astype(np.float16),
        "d": rng.standard_normal((2, 2)),
        "n": np.arange(9, dtype=np.int64),
        "big_endian": np.arange(6, dtype=">f4"),
        "fortran": np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32)),
        "strided": np.arange(20, dtype=np.int32)[::3],
        "scalar": np.float32(2.5),
        "empty": np.zeros((0, 3), np.float32),
        "mask": np.array([True, False]),
        "u8": np.arange(3, dtype=np.uint8),
    }
    path = tmp_path / "ours.safetensors"
    save_safetensors(path, arrays, metadata={"format": "pt", "note": "ü"})
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    assert (8 + n) % 8 == 0  # data section aligned
    theirs = load_file(str(path))
    ours = read_safetensors(path)
    for k, a in arrays.items():
        for got in (theirs[k], ours[k]):
            assert got.dtype == a.dtype.newbyteorder("=") and got.shape == np.shape(a), k
            assert np.array_equal(got, a), k
    assert read_safetensors_metadata(path) == {"format": "pt", "note": "ü"}
    with pytest.raises(TypeError):
        save_safetensors(tmp_path / "x.safetensors", {"o": np.array([object()])})
    with pytest.raises(ValueError):
        save_safetensors(tmp_path / "x.safetensors", {"__metadata__": np.zeros(1)})
    assert not (tmp_path / "x.safetensors").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def _st(header: dict, data: bytes, *, raw_header: bytes = None, pad=b""):
    hb = raw_header if raw_header is not None else json.dumps(header).encode()
    hb = pad + hb
    return struct.pack("<Q", len(hb)) + hb + data


_OK = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
       "b": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]}}


@pytest.mark.parametrize("blob, match", [
    (b"\x01\x00", "HeaderTooSmall|too small"),
    (struct.pack("<Q", 100_000_001) + b"{}", "HeaderTooLarge"),
    (struct.pack("<Q", 50) + b"{}", "InvalidHeaderLength"),
    (_st(None, b"", raw_header=b'{"a\xff": 1}'), "InvalidHeader.*UTF-8"),
    (_st(None, b"", raw_header=b'{"a": '), "InvalidHeaderDeserialization"),
    (_st(None, b"", raw_header=b'{"a": NaN}'), "InvalidHeaderDeserialization"),
    (_st(None, b"\0" * 8, raw_header=b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},'
                                      b' "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}'),
     "duplicate key 'a'"),
    (_st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
          "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}}, b"\0" * 20), "InvalidOffset"),
    (_st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
          "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12), "InvalidOffset"),
    # "JSON attack": many tensors aliasing one region.
    (_st({f"t{i}": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]} for i in range(100)},
         b"\0" * 8), "InvalidOffset"),
    (_st(_OK, b"\0" * 16 + b"POLYGLOT"), "MetadataIncompleteBuffer.*trailing"),
    (_st(_OK, b"\0" * 12), "MetadataIncompleteBuffer.*truncated"),
    (_st({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8), "TensorInvalidInfo"),
    (_st({"a": {"dtype": "F64", "shape": [1 << 40, 1 << 40], "data_offsets": [0, 8]}}, b"\0" * 8),
     r"ValidationOverflow|>= 2\*\*31"),
    (_st({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, b"\0" * 2), "MisalignedSlice"),
    (_st({"a": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4), "unknown dtype"),
    (_st({"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, b"\0" * 4), "shape"),
    (_st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, b"\0" * 4), "data_offsets"),
    (_st({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4), "shape"),
    (_st({"__metadata__": {"a": 1}}, b""), "__metadata__"),
    (_st({"a": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, b"\0" * 2),
     "'a'.*F8_E4M3.*not supported"),
    (_st({"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8),
     "'a'.*C64.*not supported"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_safetensors_hostile_headers(tmp_path, blob, match):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(blob)
    with pytest.raises(CheckpointError, match=match):
        read_safetensors(path)


def test_safetensors_accepted_edge_cases(tmp_path):
    # Leading/trailing JSON whitespace, zero-size and 0-rank tensors, unknown extra info fields.
    hdr = {"z": {"dtype": "F32", "shape": [0, 5], "data_offsets": [0, 0]},
           "s": {"dtype": "F64", "shape": [], "data_offsets": [0, 8], "extra": 1}}
    blob = _st(None, struct.pack("<d", 1.5), raw_header=b"  \n" + json.dumps(hdr).encode() + b"   ")
    (tmp_path / "e.safetensors").write_bytes(blob)
    out = read_safetensors(tmp_path / "e.safetensors")
    assert out["z"].shape == (0, 5) and out["s"].shape == () and out["s"] == 1.5
    # Unaligned data offsets are copied to aligned memory.
    blob = _st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, f32([1, 2]), pad=b" ")
    (tmp_path / "u.safetensors").write_bytes(blob)
    a = read_safetensors(tmp_path / "u.safetensors")["a"]
    assert a.flags.aligned and a.tolist() == [1.0, 2.0]


def test_safetensors_huge_claims_do_not_allocate(tmp_path):
    blob = _st({"a": {"dtype": "F32", "shape": [1 << 30, 1 << 3], "data_offsets": [0, 1 << 35]}}, b"\0" * 8)
    (tmp_path / "h.safetensors").write_bytes(blob)
    tracemalloc.start()
    with pytest.raises(CheckpointError, match="MetadataIncompleteBuffer"):
        read_safetensors(tmp_path / "h.safetensors")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20


# ----------------------------------------------------------------------------------------------------
# C.6 #1: code execution attempts
# ----------------------------------------------------------------------------------------------------

def _evil_pickles(sentinel):
    cmd = f"touch {sentinel}"
    yield "posix.system", P().glob("posix", "system").s(cmd).op(b"\x85").reduce().stop().bytes()
    yield "os.system", P().glob("os", "system").s(cmd).op(b"\x85").reduce().stop().bytes()
    yield "nt.system", P().glob("nt", "system").s(cmd).op(b"\x85").reduce().stop().bytes()
    yield "builtins.eval", (P().glob("builtins", "eval")
                            .s(f"__import__('os').system({cmd!r})").op(b"\x85").reduce().stop().bytes())
    yield "builtins.exec", P().glob("builtins", "exec").s("x=1").op(b"\x85").reduce().stop().bytes()
    yield "subprocess.Popen", (P().glob("subprocess", "Popen").s("touch").s(str(sentinel))
                               .op(b"\x86").op(b"\x85").reduce().stop().bytes())
    # STACK_GLOBAL (protocol 4) and NEWOBJ paths, and an attack nested inside a state dict entry.
    p4 = P(4).s("os").s("system").op(b"\x93").s(cmd).op(b"\x85").reduce().stop().bytes()
    yield "os.system", p4
    yield "subprocess.Popen", P().glob("subprocess", "Popen").s(cmd).op(b"\x85").op(b"\x81").stop().bytes()
    nested = (P().op(b"}").s("state_dict").op(b"}").s("w").glob("os", "system").s(cmd).op(b"\x85")
              .reduce().op(b"s").op(b"s").stop().bytes())
    yield "os.system", nested
    # getattr(builtins, "eval") is refused at the getattr already.
    yield "builtins.getattr", (P().glob("builtins", "getattr").glob("builtins", "object").s("x")
                               .op(b"\x86").reduce().stop().bytes())


@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_code_execution_is_never_performed(tmp_path, container):
    sentinel = tmp_path / "PWNED"
    for qualname, pkl in _evil_pickles(sentinel):
        if container == "zip":
            path = torch_like_zip(tmp_path / "evil.pt", pkl, {})
        else:
            path = tmp_path / "evil_legacy.pt"
            magic = P().i(0x1950A86A20F9469CFC6C).stop().bytes()
            proto = P().i(1001).stop().bytes()
            sysinfo = P().op(b"}").stop().bytes()
            keys = P().op(b"]").stop().bytes()
            path.write_bytes(magic + proto + sysinfo + pkl + keys)
        with pytest.raises(UnsafeCheckpointError, match=qualname.replace(".", r"\.")):
            load_checkpoint(path)
        with pytest.raises(UnsafeCheckpointError):
            read_torch_file(path)
        assert not sentinel.exists(), qualname


def test_real_torch_save_of_malicious_reduce(tmp_path):
    torch = _torch()
    sentinel = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {sentinel}",))

    torch.save({"state_dict": {"w": torch.ones(1)}, "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"posix\.system|os\.system|nt\.system"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not sentinel.exists()


def test_globals_are_never_imported(tmp_path, monkeypatch):
    canary_dir = tmp_path / "pkgs"
    canary_dir.mkdir()
    sentinel = tmp_path / "IMPORTED"
    (canary_dir / "mv_canary_mod.py").write_text(
        f"open({str(sentinel)!r}, 'w').close()\ndef f(*a):\n    open({str(sentinel)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(canary_dir))
    pkl = (P().op(b"}").s("state_dict").op(b"}").s("x").glob("mv_canary_mod", "f").op(b")").reduce()
           .op(b"s").op(b"s").s("junk").glob("mv_canary_mod", "f").op(b")").reduce().op(b"s")
           .stop().bytes())
    path = torch_like_zip(tmp_path / "c.pt", pkl, {})
    tree = read_torch_file(path)  # inert everywhere
    assert isinstance(tree["junk"], Call) and tree["junk"].callable_name == "mv_canary_mod.f"
    # C.6 #3: the requested state dict depends on the unknown callable -> clear rejection.
    with pytest.raises(CheckpointError, match=r"'x' is built by unsupported callable mv_canary_mod\.f"):
        load_checkpoint(path)
    assert "mv_canary_mod" not in sys.modules and not sentinel.exists()


def test_unknown_reduce_and_build_in_state_dict(tmp_path):
    torch = _torch()

    class Odd:
        def __reduce__(self):
            return (math.sqrt, (4.0,))

    torch.save({"state_dict": {"w": torch.ones(1), "odd": Odd()}}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match=r"'odd' is built by unsupported callable math\.sqrt"):
        load_checkpoint(tmp_path / "odd.pt")
    torch.save({"state_dict": {"w": torch.ones(1), "ns": argparse.Namespace(a=1)}}, tmp_path / "ns.pt")
    with pytest.raises(CheckpointError, match=r"'ns' is built by unsupported callable argparse\.Namespace"):
        load_checkpoint(tmp_path / "ns.pt")
    torch.save({"state_dict": {"w": torch.ones(1), "n": 3}}, tmp_path / "int.pt")
    with pytest.raises(CheckpointError, match=r"entry 'n' .* is a int, not a tensor"):
        load_checkpoint(tmp_path / "int.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a whole pickled module
    with pytest.raises(CheckpointError, match="pickled model object"):
        load_checkpoint(tmp_path / "module.pt")


# ----------------------------------------------------------------------------------------------------
# C.6 #4-#7: pickle structure
# ----------------------------------------------------------------------------------------------------

def _vm(data, **kw):
    return pickle_vm.unpickle(data, **kw)


@pytest.mark.parametrize("pid_pickle, match", [
    (P().s("storage").glob("torch", "EvilStorage").s("0").s("cpu").i(1).op(b"t"), "unknown storage class"),
    (P().s("storage").glob("os", "system").s("0").s("cpu").i(1).op(b"t"), "unknown storage class"),
    (P().s("module").glob("torch", "FloatStorage").s("0").s("cpu").i(1).op(b"t"), "not a 5-tuple"),
    (P().s("storage").glob("torch", "FloatStorage").s("0").s("cpu").op(b"t"), "not a 5-tuple"),
    (P().s("storage").glob("torch", "FloatStorage").i(0).s("cpu").i(1).op(b"t"), "storage key"),
    (P().s("storage").glob("torch", "FloatStorage").s("0").s("cpu").i(-1).op(b"t"), "numel"),
    (P().s("storage").glob("torch", "FloatStorage").s("0").s("cpu").i(1 << 62).op(b"t"), "overflows"),
])
def test_bad_persistent_ids(tmp_path, pid_pickle, match):
    p = P().mark()
    p.b += pid_pickle.b[2:]  # reuse the assembled items after MARK
    pkl = p.persid().stop().bytes()
    path = torch_like_zip(tmp_path / "pid.pt", pkl, {"0": f32([1.0])})
    expect_error(path, match)
    # A persistent id in a pickle that must have none (legacy header pickles, detection).
    with pytest.raises(CheckpointError, match="persistent id"):
        _vm(pkl)


@pytest.mark.parametrize("raw, match", [
    (b"\x80\x02cos\nsystem\n(S'echo'\ntR.", r"unsupported opcode.*STRING"),
    (b"\x80\x02(ios\nsystem\nS'x'\n.", r"unsupported opcode.*INST"),
    (b"\x80\x02(cos\nsystem\no.", r"unsupported opcode.*OBJ"),
    (b"\x80\x02\x82\x01.", r"unsupported opcode.*EXT1"),
    (b"\x80\x02P0\n.", r"unsupported opcode.*PERSID"),
    (b"\x80\x02\x8e\x01\x00\x00\x00\x00\x00\x00\x00x.", r"unsupported opcode.*BINBYTES8"),
    (b"\x80\x02I1\n.", r"unsupported opcode.*INT"),
    (b"\x80\x02\xff.", r"unsupported opcode.*0xff"),
    (b"\x80\x05N.", "protocol 5"),
    (b"\x80\x01N.", "protocol 1"),
    (b"N.", "does not start with PROTO"),
    (b"\x80\x02N\x80\x02.", "PROTO must be the first"),
])
def test_unsupported_opcodes_are_rejected_with_offset(raw, match):
    with pytest.raises(CheckpointError, match=match) as ei:
        _vm(raw)
    assert "at byte" in str(ei.value)


@pytest.mark.parametrize("raw, match", [
    (b"\x80\x02\x85.", "stack underflow"),
    (b"\x80\x02N", "missing STOP"),
    (b"\x80\x02}Nu.", "no MARK"),
    (b"\x80\x02(N.", "data left on the stack"),
    (b"\x80\x02h\x05.", "memo index 5 was never stored"),
    (b"\x80\x02j\x00\x00\x01\x00.", "memo index 65536"),
    (b"\x80\x02NN.", "data left on the stack"),
    (b"\x80\x02}(NNN" + b"u.", "odd number"),
    (b"\x80\x02](Nu.", "SETITEMS onto list"),
    (b"\x80\x02}Na.", "APPEND onto dict"),
    (b"\x80\x02}]]s.", "unhashable dict key"),
    (b"\x80\x02X\x02\x00\x00\x00\xff\xfe.", "malformed data.*UnicodeDecodeError"),
    (b"\x80\x02N)R.", "REDUCE on a non-callable"),
    (b"\x80\x02cfoo\nbar\nNR.", "not a tuple"),
    (b"\x80\x02K\x01K\x02b.", "BUILD on int"),
    (b"\x80\x02K\x01b.", "stack underflow"),
    (b"\x80\x02cfoo\nbar" + b"x" * 300, "not terminated"),
])
def test_structural_corruption(raw, match):
    with pytest.raises(CheckpointError, match=match):
        _vm(raw)


def test_every_truncation_of_a_real_pickle_is_rejected():
    torch = _torch()
    buf = io.BytesIO()
    torch.save({"a": torch.ones(2, 3), "b": [1, 2.5, "x", (None, True)]}, buf)
    pkl = zipfile.ZipFile(io.BytesIO(buf.getvalue())).read("archive/data.pkl")

    def pl(pid):
        key, tn, info, loc, numel, _ = pickle_vm.parse_storage_pid(pid, legacy=False)
        return pickle_vm.StorageRef(key, tn, info[0], info[1], numel, loc)

    obj, end = _vm(pkl, persistent_load=pl)
    assert end == len(pkl) and isinstance(obj["a"], TensorRef) and obj["b"] == [1, 2.5, "x", (None, True)]
    for cut in range(len(pkl)):
        with pytest.raises(CheckpointError):
            _vm(pkl[:cut], persistent_load=pl)


def test_caps_bound_memory_not_claims():
    tracemalloc.start()
    # BINUNICODE / BINBYTES claiming 4 GB, LONG4 claiming 2 GB: rejected before reading.
    for raw, match in [
        (b"\x80\x02X\xff\xff\xff\xff" + b"a" * 10, "exceeds the cap"),
        (b"\x80\x02X\x01\x00\x00\x01abc", "exceeds the cap"),
        (b"\x80\x02B\xff\xff\xff\xffabc", "exceeds the cap"),
        (b"\x80\x02X\x00\x00\x10\x00abc", "truncated: string claims"),
        (b"\x80\x02\x8b\xff\xff\xff\x7f" + b"\x01" * 16, "integer of 2147483647 bytes"),
        (b"\x80\x02\x8a\xff" + b"\x01" * 255 + b".", "integer of 255 bytes"),
        (b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7fN.", "frame claims"),
        (b"\x80\x02r\xff\xff\xff\xff.", "stack underflow"),
    ]:
        with pytest.raises(CheckpointError, match=match):
            _vm(raw)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20
    # MARK bomb.
    with pytest.raises(CheckpointError, match="MARK nested deeper"):
        _vm(b"\x80\x02" + b"(" * 2000 + b".")
    # Memo flood with the default cap (1,000,000 entries).
    flood = b"\x80\x02N" + b"".join(b"r" + struct.pack("<I", i) for i in range(Limits.max_memo + 1)) + b"."
    with pytest.raises(CheckpointError, match="memo entries"):
        _vm(flood)

    class Small(Limits):
        max_stack = 1000
        max_ops = 5000

    with pytest.raises(CheckpointError, match="items on the stack"):
        _vm(b"\x80\x02" + b"N" * 2000 + b".", limits=Small)
    with pytest.raises(CheckpointError, match="opcodes"):
        _vm(b"\x80\x02N" + b"q\x00" * 6000 + b".", limits=Small)


def test_deep_nesting_is_bounded(tmp_path):
    # 100k nested 1-tuples need no MARK; the VM builds them iteratively, the walkers refuse the depth.
    depth = 100_000
    pkl = (P().op(b"}").s("state_dict").op(b")") .op(b"\x85" * depth).op(b"s").stop().bytes())
    obj, _ = _vm(pkl)
    path = torch_like_zip(tmp_path / "deep.pt", pkl, {})
    with pytest.raises(CheckpointError, match="nesting deeper"):
        read_torch_file(path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    # Deeply nested tuples as dict keys are refused before hashing.
    with pytest.raises(CheckpointError, match="dict key nested deeper"):
        _vm(b"\x80\x02})" + b"\x85" * 50 + b"Ns.")
    # Self-referencing list (cycle) terminates.
    cyc = b"\x80\x02}X\x01\x00\x00\x00a]q\x00h\x00as."
    path = torch_like_zip(tmp_path / "cyc.pt", cyc, {})
    tree = read_torch_file(path)
    assert tree["a"][0] is tree["a"]


# ----------------------------------------------------------------------------------------------------
# C.6 #8-#12: containers
# ----------------------------------------------------------------------------------------------------

def test_torchscript_archives_are_refused(tmp_path):
    torch = _torch()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still writes files
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "ts.pt")
    expect_error(tmp_path / "ts.pt", "TorchScript")
    simple_zip(tmp_path, "ts2.pt", extra_entries=[("archive/constants.pkl", b"\x80\x02N.")])
    expect_error(tmp_path / "ts2.pt", "TorchScript")


def test_legacy_tar_is_refused(tmp_path):
    path = tmp_path / "old.tar"
    with tarfile.open(path, "w") as t:
        for name in ("sys_info", "pickle", "storages", "tensors"):
            data = b"\x80\x02N."
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    expect_error(path, "legacy tar")


def test_zip_bomb_is_refused(tmp_path):
    pkl = tensor_pickle({"w": ("FloatStorage", "0", 16 << 20, 0, (16 << 20,), (1,))})
    path = torch_like_zip(tmp_path / "bomb.pt", pkl, {"0": bytes(64 << 20)}, deflate={"0"})
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    expect_error(path, "compressed")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20


def _patch(raw: bytes, off: int, fmt: str, value) -> bytes:
    b = bytearray(raw)
    struct.pack_into(fmt, b, off, value)
    return bytes(b)


def _cd_entries(raw: bytes):
    """(offset of each central directory entry, its name)."""
    out = []
    i = raw.find(b"PK\x01\x02")
    while i >= 0:
        nlen = struct.unpack_from("<H", raw, i + 28)[0]
        out.append((i, raw[i + 46:i + 46 + nlen].decode()))
        i = raw.find(b"PK\x01\x02", i + 46)
    return out


def test_zip_structure_attacks(tmp_path):
    good = simple_zip(tmp_path).read_bytes()
    assert load_checkpoint(simple_zip(tmp_path))["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    cases = []
    # Entries outside the common prefix (the first entry's directory).
    simple_zip(tmp_path, "outside.pt", extra_entries=[("other/evil", b"x")])
    cases.append(((tmp_path / "outside.pt").read_bytes(), "outside the archive directory"))
    # Duplicate names.
    with pytest.warns(UserWarning):
        simple_zip(tmp_path, "dup.pt", extra_entries=[("archive/data/0", f32(np.arange(6)))])
    cases.append(((tmp_path / "dup.pt").read_bytes(), "duplicate record name"))
    ents = dict((name, off) for off, name in _cd_entries(good))
    pkl_cd = ents["archive/data.pkl"]
    # Local header offset pointing at another entry's header.
    other_lho = struct.unpack_from("<I", good, ents["archive/data/0"] + 42)[0]
    cases.append((_patch(good, pkl_cd + 42, "<I", other_lho), "local header name differs"))
    # Overlapping records: data.pkl claims to run into the next record.
    big = struct.unpack_from("<I", good, pkl_cd + 20)[0] + 40
    bad = _patch(_patch(good, pkl_cd + 20, "<I", big), pkl_cd + 24, "<I", big)
    cases.append((bad, "overlap"))
    # Payload beyond the data area.
    huge = 10 ** 9
    cases.append((_patch(_patch(good, pkl_cd + 20, "<I", huge), pkl_cd + 24, "<I", huge),
                  "runs past the data area"))
    # Bogus ZIP64 size: 0xFFFFFFFF without a ZIP64 extra field.
    cases.append((_patch(good, pkl_cd + 20, "<I", 0xFFFFFFFF), "ZIP64"))
    # Central directory offset beyond EOF.
    eocd = good.rfind(b"PK\x05\x06")
    cases.append((_patch(good, eocd + 16, "<I", len(good) + 100), "central directory"))
    # EOCD entry count larger than the directory can hold.
    cases.append((_patch(_patch(good, eocd + 8, "<H", 500), eocd + 10, "<H", 500), "cannot hold|entries"))
    # Encrypted flag.
    cases.append((_patch(good, pkl_cd + 8, "<H", 1), "encrypted"))
    # Local method differs from the directory.
    lho = struct.unpack_from("<I", good, pkl_cd + 42)[0]
    cases.append((_patch(good, lho + 8, "<H", 8), "local method"))
    # A data record that is compressed per the directory (method 8) and locally.
    cases.append((_patch(_patch(good, pkl_cd + 10, "<H", 8), lho + 8, "<H", 8), "compressed"))
    # Bad local header signature (of the storage record; the first one is also the format magic).
    lho0 = struct.unpack_from("<I", good, ents["archive/data/0"] + 42)[0]
    cases.append((_patch(good, lho0, "<I", 0), "local header signature"))
    for i, (raw, match) in enumerate(cases):
        p = tmp_path / f"case{i}.pt"
        p.write_bytes(raw)
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(p)
    # The reader never writes anything next to the file (no extraction).
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".pt")) == []


def test_zip64_archives(tmp_path):
    torch = _torch()
    # torch writes ZIP64 end records; Python's zipfile writes ZIP64 extras when forced.
    path = tmp_path / "z64.pt"
    pkl = tensor_pickle({"w": ("FloatStorage", "0", 6, 0, (6,), (1,))})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        with z.open("archive/data/0", "w", force_zip64=True) as f:
            f.write(f32(np.arange(6)))
    assert load_checkpoint(path)["w"].tolist() == list(range(6))
    torch.save({"w": torch.arange(6.0)}, tmp_path / "t.pt")
    assert b"PK\x06\x06" in (tmp_path / "t.pt").read_bytes()


def build_zip64(entries, overrides=None):
    """A minimal stored ZIP64 archive whose central directory always uses ZIP64 extra fields.

    ``overrides[name] = (usize, csize, offset)`` replaces the 64-bit values in the directory only.
    """
    overrides = overrides or {}
    out = bytearray()
    cd = bytearray()
    for name, data in entries:
        nb = name.encode()
        lho = len(out)
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 45, 0, 0, 0, 0, zipfile.crc32(data),
                           len(data), len(data), len(nb), 0) + nb + data
        usize, csize, off = overrides.get(name, (len(data), len(data), lho))
        extra = struct.pack("<HHQQQ", 1, 24, usize, csize, off)
        cd += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 45, 45, 0, 0, 0, 0, zipfile.crc32(data),
                          0xFFFFFFFF, 0xFFFFFFFF, len(nb), len(extra), 0, 0, 0, 0, 0xFFFFFFFF) + nb + extra
    cd_off = len(out)
    out += cd
    z64 = len(out)
    out += struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, len(entries), len(entries),
                       len(cd), cd_off)
    out += struct.pack("<4sIQI", b"PK\x06\x07", 0, z64, 1)
    out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return bytes(out)


def test_zip64_directory_values(tmp_path):
    pkl = tensor_pickle({"w": ("FloatStorage", "0", 6, 0, (6,), (1,))})
    entries = [("arc/data.pkl", pkl), ("arc/data/0", f32(np.arange(6)))]
    assert load_checkpoint(build_zip64(entries))["w"].tolist() == list(range(6))
    for override, match in [((1 << 62, 1 << 62, None), "runs past the data area"),
                            ((24, 24, 1 << 40), "beyond the data area"),
                            ((24, 20, None), "compressed size 20 != size 24"),
                            ((2**64 - 1, 24, None), "compressed size 24 != size")]:
        raw = build_zip64(entries)
        lho = raw.index(b"PK\x03\x04", 10)
        usize, csize, off = override
        bad = build_zip64(entries, {"arc/data/0": (usize, csize, lho if off is None else off)})
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(bad)


def test_legacy_storage_views(tmp_path):
    def legacy(view, tensor_size, data_count=6):
        p = P().op(b"}").s("w").glob("torch._utils", "_rebuild_tensor_v2").mark()
        p.mark().s("storage").glob("torch", "FloatStorage").s("0").s("cpu").i(6)
        p.s("v").i(view[0]).i(view[1]).op(b"\x87").tup().persid()
        p.i(0).ints(tensor_size).ints((1,)).op(b"\x89").glob("collections", "OrderedDict")
        p.op(b")").reduce().tup().reduce().op(b"s").stop()
        head = (P().i(0x1950A86A20F9469CFC6C).stop().bytes() + P().i(1001).stop().bytes()
                + P().op(b"}").stop().bytes())
        keys = P().op(b"]").s("0").op(b"a").stop().bytes()
        return head + p.bytes() + keys + struct.pack("<q", data_count) + f32(np.arange(6))

    assert detect_format(legacy((2, 3), (3,))) == "legacy"
    assert load_checkpoint(legacy((2, 3), (3,)))["w"].tolist() == [2.0, 3.0, 4.0]
    with pytest.raises(CheckpointError, match="view 'v' .* outside storage '0'"):
        load_checkpoint(legacy((4, 3), (3,)))
    with pytest.raises(CheckpointError, match="reaches element 3 of storage 'v' with 3 elements"):
        load_checkpoint(legacy((2, 3), (4,)))
    with pytest.raises(CheckpointError, match="records 5 elements"):
        load_checkpoint(legacy((2, 3), (3,), data_count=5))


def test_record_size_must_match_numel(tmp_path):
    pkl = tensor_pickle({"w": ("FloatStorage", "0", 10, 0, (2, 3), (3, 1))})
    torch_like_zip(tmp_path / "short.pt", pkl, {"0": f32(np.arange(8))})
    expect_error(tmp_path / "short.pt", r"'archive/data/0' holds 32 bytes but storage '0' declares 10 x 4")
    torch_like_zip(tmp_path / "long.pt", pkl, {"0": f32(np.arange(12))})
    expect_error(tmp_path / "long.pt", "holds 48 bytes")
    torch_like_zip(tmp_path / "missing.pt", pkl, {})
    expect_error(tmp_path / "missing.pt", "has no record")
    # Also when the tensor is not part of the requested state dict (one validation path).
    pkl2 = tensor_pickle({"w": ("FloatStorage", "0", 10, 0, (2,), (1,))}, wrapper="optimizer")
    torch_like_zip(tmp_path / "opt.pt", pkl2, {"0": f32(np.arange(8))})
    expect_error(tmp_path / "opt.pt", "holds 32 bytes", loader=read_torch_file)
    # The same storage key declared with two different sizes.
    p = tensor_pickle({"a": ("FloatStorage", "0", 6, 0, (6,), (1,)),
                       "b": ("FloatStorage", "0", 7, 0, (6,), (1,))})
    torch_like_zip(tmp_path / "twice.pt", p, {"0": f32(np.arange(6))})
    expect_error(tmp_path / "twice.pt", "declared twice")


# ----------------------------------------------------------------------------------------------------
# C.6 #13-#16: tensor metadata
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("offset, size, stride, match", [
    (1, (2, 3), (3, 1), "reaches element 6 of storage '0' with 6 elements"),
    (0, (3, 3), (3, 1), "reaches element 8"),
    (0, (2, 3), (4, 1), "reaches element 6"),
    (0, (7,), (1,), "reaches element 6"),
    (0, (2, 3), (3,), "differ in length"),
    (-1, (2,), (1,), "offset -1"),
    (0, (2,), (-1,), "negative"),
    (0, (-2,), (1,), "negative"),
    (0, (1 << 40, 1 << 40), (1, 1), r"overflows int64|>= 2\*\*31"),
    (0, (1 << 62, 4), (0, 0), r"overflows int64|>= 2\*\*31"),
    (9, (0,), (1,), "empty tensor offset 9"),
])
def test_tensor_view_bounds(tmp_path, offset, size, stride, match):
    pkl = tensor_pickle({"w": ("FloatStorage", "0", 6, offset, size, stride)})
    path = torch_like_zip(tmp_path / "v.pt", pkl, {"0": f32(np.arange(6))})
    expect_error(path, match)


def test_stride_zero_expansion_is_capped(tmp_path):
    # A 1-element storage viewed as 2**34 elements with stride 0: valid bounds, but a 64 GB copy.
    pkl = tensor_pickle({"w": ("FloatStorage", "0", 1, 0, (1 << 17, 1 << 17), (0, 0))})
    path = torch_like_zip(tmp_path / "x.pt", pkl, {"0": f32([1.0])})
    tracemalloc.start()
    expect_error(path, "copy more than")
    assert tracemalloc.get_traced_memory()[1] < 1 << 20
    tracemalloc.stop()
    # Many entries aliasing one storage through non-contiguous views: each would be a fresh copy.
    n = 64 * 1024

    class Small(Limits):
        max_copy_slack_bytes = 1 << 20

    entries = {f"t{i}": ("FloatStorage", "0", n, 0, (256, 256), (1, 256)) for i in range(100)}
    path = torch_like_zip(tmp_path / "alias.pt", tensor_pickle(entries), {"0": f32(np.zeros(n))})
    with pytest.raises(CheckpointError, match="copy more than"):
        read_torch_file(path, limits=Small)
    assert len(read_torch_file(path)) == 100  # within the default cap (25 MB of copies)
    # A small legitimate expand works.
    pkl = tensor_pickle({"w": ("FloatStorage", "0", 1, 0, (2, 3), (0, 0))})
    path = torch_like_zip(tmp_path / "ok.pt", pkl, {"0": f32([7.0])})
    assert load_checkpoint(path)["w"].tolist() == [[7.0] * 3] * 2


def test_byteorder_record(tmp_path):
    pkl = tensor_pickle({"w": ("FloatStorage", "0", 6, 0, (2, 3), (3, 1)),
                         "h": ("HalfStorage", "1", 4, 1, (3,), (1,)),
                         "b": ("BFloat16Storage", "2", 2, 0, (2,), (1,)),
                         "l": ("LongStorage", "3", 2, 0, (2,), (1,))})
    w = np.arange(6, dtype=np.float32)
    h = np.array([9, 1.5, -2, 4], np.float16)
    bf = np.array([1.0, -3.5], np.float32)
    bf16 = (bf.view(np.uint32) >> 16).astype(np.uint16)
    lng = np.array([-1, 1 << 40], np.int64)
    want = {"w": w.reshape(2, 3), "h": h[1:], "b": bf, "l": lng}
    for order, fmt in [(None, "<"), (b"little", "<"), (b"big", ">")]:
        recs = {"0": w.astype(fmt + "f4").tobytes(), "1": h.astype(fmt + "f2").tobytes(),
                "2": bf16.astype(fmt + "u2").tobytes(), "3": lng.astype(fmt + "i8").tobytes()}
        path = torch_like_zip(tmp_path / f"bo_{order}.pt", pkl, recs, byteorder=order)
        got = load_checkpoint(path)
        for k, v in want.items():
            assert got[k].dtype.isnative and got[k].dtype == v.dtype, (order, k)
            assert np.array_equal(got[k], v), (order, k)
    torch_like_zip(tmp_path / "mid.pt", pkl, {}, byteorder=b"middle")
    expect_error(tmp_path / "mid.pt", "byteorder record is b'middle'")


def test_unsupported_dtypes_are_named(tmp_path):
    torch = _torch()
    torch.save({"c": torch.ones(2, dtype=torch.complex64), "w": torch.ones(1)}, tmp_path / "c.pt")
    expect_error(tmp_path / "c.pt", r"'c'.*ComplexFloatStorage")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8)
    torch.save({"q": q}, tmp_path / "q.pt")
    expect_error(tmp_path / "q.pt", r"'q'.*_rebuild_qtensor")
    torch.save({"f8": torch.zeros(2, dtype=torch.float8_e5m2)}, tmp_path / "f8.pt")
    expect_error(tmp_path / "f8.pt", r"'f8'.*float8_e5m2")


# ----------------------------------------------------------------------------------------------------
# C.6 #18: truncation of every format; random corruption never escapes CheckpointError
# ----------------------------------------------------------------------------------------------------

def _three_formats(tmp_path):
    torch = _torch()
    sd = {"a": torch.randn(5, 4), "b": torch.arange(3), "c": torch.randn(2).bfloat16()}
    torch.save(sd, tmp_path / "z.pt")
    torch.save(sd, tmp_path / "l.pt", _use_new_zipfile_serialization=False)
    from safetensors.torch import save_file
    save_file(sd, tmp_path / "s.safetensors")
    return sd, [tmp_path / "z.pt", tmp_path / "l.pt", tmp_path / "s.safetensors"]


def test_truncated_files_of_every_format(tmp_path):
    sd, paths = _three_formats(tmp_path)
    for p in paths:
        raw = p.read_bytes()
        assert_same(load_checkpoint(p), sd, ordered=False)
        cuts = sorted(set(range(0, len(raw), max(1, len(raw) // 97))) | {len(raw) - 1, len(raw) - 8, 1})
        for cut in cuts:
            with pytest.raises(CheckpointError):
                load_checkpoint(raw[:cut])
        with pytest.raises(CheckpointError):  # trailing bytes (polyglot guard) in every format
            load_checkpoint(raw + b"\0" * 3)


def test_random_corruption_only_raises_checkpoint_error(tmp_path):
    sd, paths = _three_formats(tmp_path)
    rng = random.Random(1234)
    for p in paths:
        raw = bytearray(p.read_bytes())
        for _ in range(150):
            b = bytearray(raw)
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            try:
                out = load_checkpoint(bytes(b), check_finite="ignore")
            except CheckpointError:
                continue
            assert isinstance(out, dict) and all(isinstance(v, np.ndarray) for v in out.values())


def test_unknown_formats(tmp_path):
    for raw, match in [(b"", "empty"), (b"1234", "too small"),
                       (b"GARBAGE!" * 10, "unknown checkpoint format"),
                       (b"\x80\x02}q\x00X\x01\x00\x00\x00aK\x01s.", "plain pickle"),
                       (b"PK\x05\x06" + bytes(18), "empty zip")]:
        p = tmp_path / "f.bin"
        p.write_bytes(raw)
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(p)
    with pytest.raises(CheckpointError, match="cannot open"):
        load_checkpoint(tmp_path / "does-not-exist.pt")
    with pytest.raises(TypeError):
        load_checkpoint(12345)


def test_legacy_format_attacks(tmp_path):
    torch = _torch()
    sd = {"w": torch.arange(6.0).reshape(2, 3)}
    torch.save(sd, tmp_path / "l.pt", _use_new_zipfile_serialization=False)
    raw = (tmp_path / "l.pt").read_bytes()
    # The element count before the storage bytes disagrees with the persistent id.
    count_at = len(raw) - 24 - 8
    assert struct.unpack_from("<q", raw, count_at)[0] == 6
    for value, match in [(7, "records 7 elements"), (-1, "records -1 elements"),
                         (1 << 62, "records")]:
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(_patch(raw, count_at, "<q", value))
    with pytest.raises(CheckpointError, match="unexpected bytes after"):
        load_checkpoint(raw + b"\0" * 8)
    # A wrong magic number is not a torch file.
    with pytest.raises(CheckpointError, match="plain pickle"):
        load_checkpoint(P().i(12345).stop().bytes() + raw[14:])


# ----------------------------------------------------------------------------------------------------
# C.6 #21: NaN / Inf
# ----------------------------------------------------------------------------------------------------

def test_nonfinite_values_warn_once(tmp_path):
    arrays = {"ok": np.ones(3, np.float32), "nan": np.array([1, np.nan], np.float32),
              "inf": np.array([np.inf], np.float16), "ints": np.arange(3)}
    save_safetensors(tmp_path / "n.safetensors", arrays)
    with pytest.warns(RuntimeWarning, match=r"NaN/Inf values in 'nan', 'inf'") as rec:
        sd = load_checkpoint(tmp_path / "n.safetensors")
    assert len(rec) == 1 and np.isnan(sd["nan"][1])
    with pytest.raises(CheckpointError, match="NaN/Inf"):
        load_checkpoint(tmp_path / "n.safetensors", check_finite="raise")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_checkpoint(tmp_path / "n.safetensors", check_finite="ignore")


# ----------------------------------------------------------------------------------------------------
# Torch is never needed at run time
# ----------------------------------------------------------------------------------------------------

def test_reader_works_without_torch(tmp_path):
    torch = _torch()
    sd = _dtype_dict()
    torch.save(sd, tmp_path / "z.pt")
    torch.save({"state_dict": sd, "args": argparse.Namespace(a=1)}, tmp_path / "l.pt",
               _use_new_zipfile_serialization=False)
    from safetensors.torch import save_file
    save_file(sd, tmp_path / "s.safetensors")
    np.savez(tmp_path / "want.npz", **{k: _np(v) for k, v in sd.items()})
    # The directory holding the mobilevit package this test imported (source tree or site-packages).
    import mobilevit.checkpoint as ckpt
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(ckpt.__file__))))
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None          # any "import torch" now raises ImportError
        sys.modules["safetensors"] = None
        sys.path.insert(0, {repo!r})
        import numpy as np
        from mobilevit.checkpoint import load_checkpoint
        want = np.load({str(tmp_path / 'want.npz')!r})
        for name in ("z.pt", "l.pt", "s.safetensors"):
            got = load_checkpoint({str(tmp_path)!r} + "/" + name)
            assert sorted(got) == sorted(want.files), name
            for k in want.files:
                assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), (name, k)
        assert sys.modules["torch"] is None
        print("OK")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "OK"
