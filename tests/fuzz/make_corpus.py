"""Regenerate the committed seed corpora in ``tests/fuzz/corpus/<target>/``.

Needs torch (the test extras: ``pip install -e .[test]``) for real ``torch.save`` files in both the
zip and the legacy format; ``safetensors`` for the reference writer.  Run from anywhere::

    python tests/fuzz/make_corpus.py          # rewrites tests/fuzz/corpus/*

Each corpus file is an input of one harness, i.e. it starts with that harness's mode byte (see the
harness docstrings).  Seeds are small (every file < 64 KiB, all < 1 MiB) and deterministic, so
rerunning this script gives the same bytes for the same torch version.  The c_api seeds are found by
sampling the harness's own decoder with a fixed seed and keeping, per entry point, inputs that reach
a result and inputs that are rejected.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import io
import os
import pickle
import random
import shutil
import struct
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
sys.path.insert(0, HERE)

MAX_FILE = 64 * 1024


def _write(target: str, name: str, data: bytes) -> None:
    assert len(data) < MAX_FILE, (target, name, len(data))
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def _torch_bytes(obj, legacy=False) -> bytes:
    import torch
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def _state_dicts():
    import torch
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 2, 3)
    bn = torch.nn.BatchNorm2d(2)
    small = collections.OrderedDict()
    small.update({f"conv.{k}": v for k, v in conv.state_dict().items()})
    small.update({f"bn.{k}": v for k, v in bn.state_dict().items()})  # includes int64 num_batches_tracked
    dtypes = {
        "f16": torch.arange(6, dtype=torch.float16).reshape(2, 3),
        "bf16": torch.linspace(-2, 2, 5).to(torch.bfloat16),
        "f64": torch.tensor([1.5, -2.25]).double(),
        "i32": torch.tensor([[1, -2], [3, 4]], dtype=torch.int32),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "b": torch.tensor([True, False]),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "scalar": torch.tensor(3.0),
        "empty": torch.zeros(0, 4),
    }
    base = torch.arange(12.0).reshape(3, 4)
    views = {
        "t": base.t(),                 # non-contiguous view (stride (1, 4))
        "row": base[1],                # storage offset 4
        "step": base[:, ::2],          # stride (4, 2)
        "tied_a": base, "tied_b": base,  # one storage, two entries
        "expand": torch.ones(1, 3).expand(4, 3),  # stride 0
    }
    return small, dtypes, views


def _zip_parts(data: bytes):
    """(data.pkl bytes, [record sizes of data/0..k-1]) of a torch zip, or None if keys are not 0..k-1."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
        prefix = names[0].split("/", 1)[0] + "/"
        pkl = z.read(prefix + "data.pkl")
        recs = {n[len(prefix) + 5:]: z.getinfo(n).file_size for n in names if n.startswith(prefix + "data/")}
    keys = sorted(recs, key=lambda s: int(s) if s.isdigit() else -1)
    if keys != [str(i) for i in range(len(keys))] or len(keys) > 4 or any(v > 65535 for v in recs.values()):
        return None
    return pkl, [recs[k] for k in keys]


def _hostile_pickles():
    """Hand-made pickles (protocol 2 opcodes) for the VM."""
    P = b"\x80\x02"
    out = {}
    out["os_system_reduce"] = P + b"cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R."
    out["eval_reduce"] = P + b"cbuiltins\neval\nX\x01\x00\x00\x001\x85R."
    out["inert_global"] = P + b"}(X\x04\x00\x00\x00argscargparse\nNamespace\n)Rq\x01u."
    out["ordered_dict"] = P + b"ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00aK\x01u."
    out["deep_tuples"] = P + b"(" * 40 + b")" + b"t" * 40 + b"."
    out["memo_roundtrip"] = P + b"]q\x00(K\x01h\x00e."   # a list containing itself
    out["long1"] = P + b"\x8a\x09" + b"\xff" * 9 + b"."
    out["binget_missing"] = P + b"h\x07."
    out["stack_underflow"] = P + b"t."
    out["no_stop"] = P + b"K\x01"
    out["persid_bad"] = P + b"X\x03\x00\x00\x00abcQ."
    # ('storage', torch.FloatStorage, '0', 'cpu', 4) then _rebuild_tensor_v2(storage, 0, (2, 2), (2, 1))
    storage = (b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ")
    out["rebuild_tensor"] = (P + b"}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(" + storage
                             + b"K\x00K\x02K\x02\x86K\x02K\x01\x86\x89ccollections\nOrderedDict\n)Rtqs.")
    out["rebuild_tensor_oob"] = (P + b"}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(" + storage
                                 + b"K\x01K\x02K\x02\x86K\x02K\x01\x86\x89ccollections\nOrderedDict\n)Rtqs.")
    out["rebuild_tensor_stride0"] = (P + b"}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(" + storage
                                     + b"K\x00K\x40K\x40\x86K\x00K\x00\x86\x89ccollections\nOrderedDict\n)Rtqs.")
    # Memo-shared structures (issue 12): tiny pickles whose expansion is exponential.
    def shared_tuple(width, depth):
        b = b"K\x01\x85q\x00"
        for lvl in range(depth):
            b += b"0(" + (b"h" + bytes([lvl])) * width + b"tq" + bytes([lvl + 1])
        return b
    out["shared_tuple_key"] = P + b"}" + shared_tuple(8, 6) + b"K\x01s."
    out["shared_tuple_frozenset"] = P + b"(" + shared_tuple(8, 6) + b"\x91."
    out["shared_tuple_persid"] = P + shared_tuple(8, 6) + b"\x85Q."
    out["shared_tuple_size"] = (P + b"}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(" + storage
                                + b"K\x00" + shared_tuple(8, 6).replace(b"q", b"r\x00\x00\x00", 0)
                                + b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)Rtqs.")
    out["reduce_chain"] = P + b"}X\x01\x00\x00\x00wcmymod\nThing\n" + b")R" * 2000 + b"s."
    out["tensor_dim_2_31"] = (P + b"}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(" + storage
                              + b"K\x00K\x00J\x00\x00\x00\x80\x8a\x05\x00\x00\x00\x80\x00\x86K\x01K\x01\x86"
                              + b"\x89ccollections\nOrderedDict\n)Rtqs.")
    return out


def make_checkpoint_and_pickle(torch_ok: bool) -> None:
    import fuzz_checkpoint as fc
    pk = _hostile_pickles()
    for name, data in pk.items():
        _write("pickle", f"hand_{name}", bytes([0]) + data)
        _write("pickle", f"hand_{name}_storage", bytes([1 | 4]) + data)
        _write("pickle", f"hand_{name}_tiny", bytes([2 | 1]) + data)
    for proto in (2, 3, 4, 5):
        obj = {"a": [1, 2.5, "x", b"y", None, True], "b": (1, (2, (3,))), "c": {1, 2}, "d": frozenset([3]),
               "e": -(1 << 70), "f": {"nested": {"k": [[], {}]}}}
        _write("pickle", f"stdlib_proto{proto}", bytes([0]) + pickle.dumps(obj, protocol=proto))
    if not torch_ok:
        return
    import torch
    small, dtypes, views = _state_dicts()
    files = {
        "small_zip": _torch_bytes(small),
        "small_legacy": _torch_bytes(small, legacy=True),
        "dtypes_zip": _torch_bytes(dtypes),
        "dtypes_legacy": _torch_bytes(dtypes, legacy=True),
        "views_zip": _torch_bytes(views),
        "views_legacy": _torch_bytes(views, legacy=True),
        "train_zip": _torch_bytes({"state_dict": small, "epoch": 3, "optimizer": {"lr": 0.1},
                                   "args": argparse.Namespace(lr=0.1),
                                   "state_dict_ema": {"module." + k: v for k, v in small.items()}}),
        "param_zip": _torch_bytes({"w": torch.nn.Parameter(torch.ones(2, 2))}),
        "ddp_zip": _torch_bytes({"module." + k: v for k, v in small.items()}),
    }
    legacy_magic = fc.LEGACY_HEADER
    for name, data in files.items():
        _write("checkpoint", f"raw_{name}", bytes([fc.MODE_RAW]) + data)
        if name.endswith("_zip"):
            parts = _zip_parts(data)
            if parts:
                pkl, sizes = parts
                payload = bytes([len(sizes)]) + b"".join(struct.pack("<H", n) for n in sizes) + pkl
                _write("checkpoint", f"built_{name}", bytes([fc.MODE_ZIP_BUILT]) + payload)
                _write("pickle", f"torch_{name}", bytes([1 | 4]) + pkl)
        elif data.startswith(legacy_magic):
            _write("checkpoint", f"legacy_{name}", bytes([fc.MODE_LEGACY]) + data[len(legacy_magic):])
    # the same file through a file object and a path
    _write("checkpoint", "raw_small_zip_fileobj", bytes([fc.MODE_RAW | 0x20]) + files["small_zip"])
    _write("checkpoint", "raw_small_legacy_path", bytes([fc.MODE_RAW | 0x40]) + files["small_legacy"])
    _write("checkpoint", "raw_train_zip_ema", bytes([fc.MODE_RAW | 0x08]) + files["train_zip"])
    # hostile containers
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", pk["os_system_reduce"])
    _write("checkpoint", "raw_zip_os_system", bytes([fc.MODE_RAW]) + z.getvalue())
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", pk["rebuild_tensor"])
        zf.writestr("archive/data/0", b"\0" * 4096)
    _write("checkpoint", "raw_zip_deflated_record", bytes([fc.MODE_RAW]) + z.getvalue())
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", pk["rebuild_tensor"])
        zf.writestr("archive/constants.pkl", b"\x80\x02).")
        zf.writestr("archive/code/x.py", b"")
    _write("checkpoint", "raw_zip_torchscript", bytes([fc.MODE_RAW]) + z.getvalue())
    _write("checkpoint", "raw_truncated_zip", bytes([fc.MODE_RAW]) + files["small_zip"][:700])
    _write("checkpoint", "raw_truncated_legacy", bytes([fc.MODE_RAW]) + files["small_legacy"][:300])
    _write("checkpoint", "zip_prefixed_garbage", bytes([fc.MODE_ZIP]) + b"\x14\x00\x00\x00\x00\x00" * 8)
    for name, pkl in (("rebuild", "rebuild_tensor"), ("oob", "rebuild_tensor_oob"),
                      ("stride0", "rebuild_tensor_stride0")):
        _write("checkpoint", f"built_hand_{name}",
               bytes([fc.MODE_ZIP_BUILT, 1]) + struct.pack("<H", 16) + pk[pkl])


def make_safetensors(torch_ok: bool) -> None:
    import numpy as np
    import fuzz_checkpoint as fc
    from mobilevit.checkpoint import save_safetensors
    tmp = os.path.join(CORPUS, ".tmp.safetensors")
    arrays = {
        "w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "h": np.arange(4, dtype=np.float16),
        "d": np.array([1.5, -2.0]),
        "i": np.array([[1, -2]], dtype=np.int64),
        "u": np.array([0, 255], dtype=np.uint8),
        "b": np.array([True, False]),
        "s": np.array(2.5, dtype=np.float32),
        "e": np.zeros((0, 3), np.float32),
    }
    save_safetensors(tmp, arrays, {"format": "pt", "note": "seed"})
    ours = open(tmp, "rb").read()
    save_safetensors(tmp, {"only": np.ones(3, np.float32)})
    one = open(tmp, "rb").read()
    os.unlink(tmp)
    files = {"ours": ours, "one": one}
    try:
        from safetensors.numpy import save as st_save
        files["reference"] = st_save({"a": np.ones((2, 2), np.float32), "b": np.zeros(3, np.int32)},
                                     metadata={"k": "v"})
    except ImportError:
        pass
    if torch_ok:
        try:
            import torch
            from safetensors.torch import save as st_tsave
            files["bf16"] = st_tsave({"x": torch.linspace(-1, 1, 6).to(torch.bfloat16).reshape(2, 3)})
        except ImportError:
            pass
    hostile = {
        "dup_keys": b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        "overlap": b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        "overflow": b'{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}',
        "f8": b'{"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}}',
        "f4": b'{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}',
        "nan": b'{"a":{"dtype":"F32","shape":[NaN],"data_offsets":[0,4]}}',
        "padded": b'   {"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}   ',
        "zero_numel_huge_dim": b'{"a":{"dtype":"F32","shape":[0,4611686018427387904],"data_offsets":[0,0]}}',
        "shape_bool": b'{"a":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}',
        "dtype_not_str": b'{"a":{"dtype":32,"shape":[1],"data_offsets":[0,4]}}',
        "metadata_not_map": b'{"__metadata__":["a"],"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        "metadata_value_obj": b'{"__metadata__":{"a":{"b":"c"}},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
    }
    for name, h in hostile.items():
        files[f"hand_{name}"] = struct.pack("<Q", len(h)) + h + b"\0\0\0\0"
    for name, data in files.items():
        _write("safetensors", f"raw_{name}", bytes([0]) + data)
        hlen = struct.unpack_from("<Q", data)[0]
        if hlen < 65536:
            _write("safetensors", f"built_{name}", bytes([1]) + struct.pack("<H", hlen) + data[8:])
        _write("checkpoint", f"st_{name}",
               bytes([fc.MODE_SAFETENSORS]) + struct.pack("<H", hlen) + data[8:]
               if hlen < 65536 else bytes([fc.MODE_RAW]) + data)
    _write("safetensors", "roundtrip_ours", bytes([4]) + ours)
    _write("safetensors", "path_ours", bytes([2]) + ours)
    _write("checkpoint", "raw_st_ours", bytes([fc.MODE_RAW]) + ours)


def make_c_api(per_target_ok=3, per_target_err=1, tries=4000) -> None:
    import numpy as np
    import fuzz_c_api as fa
    rnd = random.Random(20240607)
    names = sorted({t.__name__ for t in fa.TARGETS})
    for tname in names:
        idx = next(i for i, t in enumerate(fa.TARGETS) if t.__name__ == tname)
        ok = err = 0
        for _ in range(tries):
            if ok >= per_target_ok and err >= per_target_err:
                break
            body = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(8, 200)))
            data = bytes([idx]) + body
            if fa.SKIP_KNOWN is False and _known_bad(fa, data):
                continue
            r = fa.Reader(data)
            r.u8()
            try:
                with np.errstate(all="ignore"):
                    fa.TARGETS[idx](r)
                kind = "ok"
            except fa.ACCEPTED:
                kind = "err"
            if kind == "ok" and ok < per_target_ok:
                ok += 1
                _write("c_api", f"{tname}_ok{ok}", data)
            elif kind == "err" and err < per_target_err:
                err += 1
                _write("c_api", f"{tname}_err{err}", data)


def _known_bad(fa, data) -> bool:
    """Seeds must not hit the reported C bugs (they would crash the smoke test): decode with the
    known-bug filter on and drop inputs it would skip."""
    import numpy as np
    old = fa.SKIP_KNOWN
    fa.SKIP_KNOWN = True
    calls = []
    real = {n: getattr(fa._C, n) for n in ("conv2d", "dwconv2d", "fold")}
    try:
        for n in real:
            setattr(fa._C, n, lambda *a, _n=n: calls.append(_n))
        r = fa.Reader(data)
        t = fa.TARGETS[r.u8() % len(fa.TARGETS)]
        if t.__name__ not in ("t_conv2d", "t_dwconv2d", "t_fold"):
            return False
        try:
            with np.errstate(all="ignore"):
                t(r)
        except Exception:  # noqa: BLE001
            pass
        return not calls  # the filter skipped the call
    finally:
        for n, f in real.items():
            setattr(fa._C, n, f)
        fa.SKIP_KNOWN = old


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", action="store_true", help="do not delete existing corpus files first")
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
        torch_ok = True
    except ImportError:
        torch_ok = False
        print("torch not installed: torch.save seeds are skipped", file=sys.stderr)
    if not args.keep and os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    make_checkpoint_and_pickle(torch_ok)
    make_safetensors(torch_ok)
    make_c_api()
    total = 0
    for target in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, target))
        size = sum(os.path.getsize(os.path.join(CORPUS, target, f)) for f in files)
        total += size
        print(f"{target:12s} {len(files):3d} files {size:8d} bytes")
    print(f"total {total} bytes")
    assert total < 1 << 20
    digest = hashlib.sha256()
    for root, _, fs in sorted(os.walk(CORPUS)):
        for f in sorted(fs):
            digest.update(open(os.path.join(root, f), "rb").read())
    print("sha256", digest.hexdigest()[:16])


if __name__ == "__main__":
    main()
