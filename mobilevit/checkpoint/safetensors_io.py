"""safetensors reader (full header validation) and writer, in pure Python + NumPy.

Layout: 8-byte little-endian header length ``N``; ``N`` bytes of UTF-8 JSON
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}``;
then the data buffer (offsets relative to its start, ``end`` exclusive, little-endian, C order).

Validation mirrors the reference parser; each failure raises :class:`CheckpointError` whose message
starts with the reference error class name:

* ``HeaderTooSmall`` (< 8 bytes), ``HeaderTooLarge`` (N > 100 MB), ``InvalidHeaderLength`` (8 + N >
  file size), ``InvalidHeader`` (not UTF-8), ``InvalidHeaderDeserialization`` (not JSON, not an object,
  duplicate keys -- detected explicitly, Python's json would keep the last one --, NaN/Infinity,
  unknown dtype, wrong field types);
* ``InvalidOffset``: tensors sorted by offsets must tile the buffer from 0 with no gap or overlap;
* ``ValidationOverflow``: shape product x bit size overflows 64 bits;
* ``MisalignedSlice``: a sub-byte dtype that does not end on a byte;
* ``TensorInvalidInfo``: ``end - begin`` differs from shape x dtype size;
* ``MetadataIncompleteBuffer``: the last ``end`` + 8 + N is not exactly the file size (no trailing bytes).

Reading bfloat16 widens to float32; sub-byte / float8 / complex dtypes are validated but refused when
read, naming the tensor and dtype.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from typing import Mapping, Optional

import numpy as np

from .errors import CheckpointError
from .source import _open_source, _Source
from .inert import brief

__all__ = ["read_safetensors", "read_safetensors_metadata", "save_safetensors", "parse_header",
           "MAX_HEADER_SIZE"]

MAX_HEADER_SIZE = 100_000_000
_U64_MAX = (1 << 64) - 1
_MAX_DIM = (1 << 31) - 1  # one dimension: the C core indexes dimensions with int
_MAX_NDIM = 64            # NumPy's limit

# name -> (numpy code or None if refused on read, bit size)
_DTYPES: dict[str, tuple[Optional[str], int]] = {
    "BOOL": ("?", 8), "U8": ("u1", 8), "I8": ("i1", 8), "I16": ("i2", 16), "U16": ("u2", 16),
    "F16": ("f2", 16), "BF16": ("bf16", 16), "I32": ("i4", 32), "U32": ("u4", 32),
    "F32": ("f4", 32), "F64": ("f8", 64), "I64": ("i8", 64), "U64": ("u8", 64),
    "C64": (None, 64), "F4": (None, 4), "F6_E2M3": (None, 6), "F6_E3M2": (None, 6),
    "F8_E5M2": (None, 8), "F8_E4M3": (None, 8), "F8_E8M0": (None, 8), "F8_E4M3FNUZ": (None, 8),
    "F8_E5M2FNUZ": (None, 8),
}
_WRITE_DTYPES = {
    np.dtype("?"): "BOOL", np.dtype("u1"): "U8", np.dtype("i1"): "I8", np.dtype("i2"): "I16",
    np.dtype("u2"): "U16", np.dtype("f2"): "F16", np.dtype("i4"): "I32", np.dtype("u4"): "U32",
    np.dtype("f4"): "F32", np.dtype("f8"): "F64", np.dtype("i8"): "I64", np.dtype("u8"): "U64",
}


class _TensorInfo:
    __slots__ = ("name", "dtype", "shape", "begin", "end")

    def __init__(self, name, dtype, shape, begin, end):
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, shape, begin, end


def _err(src: _Source, kind: str, msg: str):
    raise CheckpointError(f"{src.name}: safetensors {kind}: {msg}")


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise _DuplicateKey(k)
        d[k] = v
    return d


class _DuplicateKey(Exception):
    pass


def _bad_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def _parse_int(s: str) -> int:
    if len(s.lstrip("-")) > 20:
        raise ValueError(f"integer literal of {len(s)} digits")
    return int(s)


def _is_uint(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _U64_MAX


def parse_header(src: _Source):
    """Validate the header of ``src``; returns ``(data_start, [tensor infos in header order], metadata)``."""
    size = src.size
    if size < 8:
        _err(src, "HeaderTooSmall", f"file of {size} bytes has no 8-byte header length")
    n = struct.unpack_from("<Q", src.buf, 0)[0]
    if n > MAX_HEADER_SIZE:
        _err(src, "HeaderTooLarge", f"header length {n} exceeds {MAX_HEADER_SIZE}")
    if 8 + n > size:
        _err(src, "InvalidHeaderLength", f"header length {n} + 8 exceeds the file size {size}")
    raw = bytes(src.buf[8:8 + n])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        _err(src, "InvalidHeader", f"header is not UTF-8 ({e})")
    if not text.lstrip(" \t\r\n").startswith("{"):
        _err(src, "InvalidHeaderDeserialization", "header is not a JSON object")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_bad_constant,
                            parse_int=_parse_int)
    except _DuplicateKey as e:
        _err(src, "InvalidHeaderDeserialization", f"duplicate key {e.args[0]!r} in header JSON")
    except (ValueError, RecursionError) as e:
        _err(src, "InvalidHeaderDeserialization", f"invalid JSON ({e})")
    if not isinstance(header, dict):
        _err(src, "InvalidHeaderDeserialization", "header is not a JSON object")

    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        _err(src, "InvalidHeaderDeserialization",
             f"__metadata__ is a JSON {type(metadata).__name__}, not an object mapping strings to strings")
    for k, v in metadata.items():
        if not isinstance(v, str):
            _err(src, "InvalidHeaderDeserialization",
                 f"__metadata__[{brief(k, 60)}] is {brief(v, 60)}, not a string (__metadata__ must map "
                 f"strings to strings)")

    infos = []
    for name, info in header.items():
        shown = brief(name, 80)
        if not isinstance(info, dict):
            _err(src, "InvalidHeaderDeserialization",
                 f"tensor {shown}: info is {brief(info, 60)}, not an object with dtype/shape/data_offsets")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str):
            _err(src, "InvalidHeaderDeserialization",
                 f"tensor {shown}: dtype {brief(dtype, 60)} is not a string")
        if dtype not in _DTYPES:
            _err(src, "InvalidHeaderDeserialization", f"tensor {shown}: unknown dtype {brief(dtype, 60)}")
        if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
            _err(src, "InvalidHeaderDeserialization",
                 f"tensor {shown}: shape {brief(shape, 80)} is not a list of non-negative integers")
        if len(shape) > _MAX_NDIM:
            _err(src, "InvalidHeaderDeserialization",
                 f"tensor {shown}: shape has {len(shape)} dimensions (cap {_MAX_NDIM})")
        if any(d > _MAX_DIM for d in shape):
            _err(src, "InvalidHeaderDeserialization",
                 f"tensor {shown}: shape {brief(shape, 80)} has a dimension >= 2**31 (the C core's int "
                 f"range), even if it holds no elements")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(_is_uint(o) for o in offsets)):
            _err(src, "InvalidHeaderDeserialization",
                 f"tensor {shown}: data_offsets {brief(offsets, 80)} is not two non-negative integers")
        infos.append(_TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1]))

    # Offsets tile the buffer exactly, in sorted order.
    expected = 0
    for t in sorted(infos, key=lambda t: (t.begin, t.end)):
        if t.begin != expected or t.end < t.begin:
            _err(src, "InvalidOffset",
                 f"tensor {t.name!r}: data_offsets [{t.begin}, {t.end}] but the previous tensor ends "
                 f"at {expected} (gaps and overlaps are not allowed)")
        numel = 1
        for d in t.shape:
            numel *= d
            if numel > _U64_MAX:
                _err(src, "ValidationOverflow", f"tensor {t.name!r}: shape {list(t.shape)} overflows")
        bits = numel * _DTYPES[t.dtype][1]
        if bits > _U64_MAX:
            _err(src, "ValidationOverflow",
                 f"tensor {t.name!r}: shape {list(t.shape)} x {t.dtype} overflows")
        if bits % 8:
            _err(src, "MisalignedSlice",
                 f"tensor {t.name!r}: {numel} x {t.dtype} does not end on a byte boundary")
        if t.end - t.begin != bits // 8:
            _err(src, "TensorInvalidInfo",
                 f"tensor {t.name!r}: {t.dtype}{list(t.shape)} needs {bits // 8} bytes but "
                 f"data_offsets span {t.end - t.begin}")
        expected = t.end
    if 8 + n + expected != size:
        _err(src, "MetadataIncompleteBuffer",
             f"tensors end at byte {8 + n + expected} of a {size}-byte file"
             + (" (trailing bytes)" if 8 + n + expected < size else " (truncated)"))
    return 8 + n, infos, metadata


def _to_array(src: _Source, data_start: int, t: _TensorInfo) -> np.ndarray:
    code = _DTYPES[t.dtype][0]
    if code is None:
        raise CheckpointError(f"{src.name}: tensor {t.name!r}: dtype {t.dtype} is not supported")
    raw_code = "u2" if code == "bf16" else code
    dt = np.dtype(raw_code)
    if dt.itemsize > 1:
        dt = dt.newbyteorder("<")
    numel = (t.end - t.begin) // dt.itemsize
    if numel == 0:
        arr = np.empty(t.shape, dt)
    else:
        arr = np.frombuffer(src.buf, dtype=dt, count=numel, offset=data_start + t.begin).reshape(t.shape)
    if code == "bf16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    if not arr.dtype.isnative:
        return arr.astype(arr.dtype.newbyteorder("="))
    if not arr.flags.aligned:
        return arr.copy()
    return arr


def _read_safetensors_with_metadata(path_or_fileobj):
    src = _open_source(path_or_fileobj)
    data_start, infos, metadata = parse_header(src)
    return {t.name: _to_array(src, data_start, t) for t in infos}, metadata


def read_safetensors(path_or_fileobj) -> dict[str, np.ndarray]:
    """Read every tensor of a safetensors file (validated first; nothing partial is returned).

    Keys come in header order.  Arrays are views of the private in-memory copy of the file when aligned; bfloat16 becomes float32.
    """
    return _read_safetensors_with_metadata(path_or_fileobj)[0]


def read_safetensors_metadata(path_or_fileobj) -> dict[str, str]:
    """The ``__metadata__`` mapping of a (validated) safetensors file."""
    return parse_header(_open_source(path_or_fileobj))[2]


def save_safetensors(path, mapping: Mapping[str, np.ndarray], metadata: Optional[Mapping[str, str]] = None
                     ) -> None:
    """Write ``{name: ndarray}`` as safetensors (atomically: temp file + rename).

    Tensors are ordered by descending element size then name, and the header is space-padded so the
    data buffer starts on an 8-byte boundary.  Arrays are written little-endian, C order.
    """
    if metadata is not None:
        if not isinstance(metadata, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("metadata must map str to str")
    arrays = {}
    for name, value in mapping.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"tensor name {name!r} must be a non-empty str")
        if name == "__metadata__":
            raise ValueError("'__metadata__' cannot be a tensor name")
        arr = np.asarray(value)
        dt = arr.dtype.newbyteorder("=") if arr.dtype.byteorder in "<>" else arr.dtype
        if dt not in _WRITE_DTYPES:
            raise TypeError(f"tensor {name!r}: dtype {arr.dtype} cannot be stored in safetensors")
        arrays[name] = np.asarray(arr, dtype=dt.newbyteorder("<"), order="C")  # keeps 0-d shape
    order = sorted(arrays, key=lambda k: (-arrays[k].dtype.itemsize, k))
    header: dict = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name in order:
        a = arrays[name]
        header[name] = {"dtype": _WRITE_DTYPES[a.dtype.newbyteorder("=")], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    hb = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    hb += b" " * (-(8 + len(hb)) % 8)
    if len(hb) > MAX_HEADER_SIZE:
        raise ValueError(f"safetensors header of {len(hb)} bytes exceeds {MAX_HEADER_SIZE}")

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    # os.open with 0o666 honours the umask, unlike mkstemp's 0o600.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(hb)))
            f.write(hb)
            for name in order:
                a = arrays[name]
                if a.nbytes:
                    f.write(memoryview(a.reshape(-1)).cast("B"))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
