"""Atheris harness: the pure-Python safetensors reader (``mobilevit.checkpoint.safetensors_io``).

Input: one mode byte, then the file.  Mode bits:

* bit 0 -- build the 8-byte length prefix: the next two bytes (little-endian) are the header length
  N (clamped to what is there), so the fuzzer edits JSON instead of guessing lengths;
* bit 1 -- read through a file path (copy-on-write mmap) instead of bytes;
* bit 2 -- round trip: a file that reads must write back with ``save_safetensors`` and read again
  to the same arrays.

Accepted outcomes: a result or :class:`CheckpointError`.  Oracles: every value is an ndarray of the
declared shape; when the reference ``safetensors`` package is importable, a file we accept must also
be accepted by its parser (``safetensors.deserialize``) with the same names, shapes and bytes (we
are allowed to be stricter, never looser).

Run::

    python tests/fuzz/fuzz_safetensors.py tests/fuzz/corpus/safetensors -max_total_time=60
"""
from __future__ import annotations

import contextlib
import json
import os
import struct
import sys
import tempfile

try:
    import atheris
except ImportError:
    atheris = None

try:
    import mobilevit.checkpoint  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

_instrument = atheris.instrument_imports(include=["mobilevit"]) if atheris else contextlib.nullcontext()
with _instrument:
    import numpy as np
    from mobilevit.checkpoint import CheckpointError, read_safetensors, read_safetensors_metadata
    from mobilevit.checkpoint import save_safetensors

try:
    from safetensors import deserialize as _reference_deserialize
except ImportError:  # the reference parser is optional
    _reference_deserialize = None

_TMP = tempfile.mkdtemp(prefix="mv-fuzz-st-")
_IN = os.path.join(_TMP, "in.safetensors")
_OUT = os.path.join(_TMP, "out.safetensors")


def build(data: bytes) -> bytes:
    """Mode-bit-0 layout: u16 header length, then header + data."""
    n = int.from_bytes(data[:2].ljust(2, b"\0"), "little")
    rest = data[2:]
    return struct.pack("<Q", min(n, len(rest))) + rest


def _read(src):
    sd = read_safetensors(src)
    md = read_safetensors_metadata(src)
    return sd, md


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    mode, blob = data[0], data[1:]
    if mode & 1:
        blob = build(blob)
    src = blob
    if mode & 2:
        with open(_IN, "wb") as f:
            f.write(blob)
        src = _IN
    try:
        sd, md = _read(src)
    except CheckpointError:
        return
    assert isinstance(sd, dict) and isinstance(md, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in md.items())
    header = json.loads(bytes(blob[8:8 + struct.unpack_from("<Q", blob)[0]]).decode("utf-8"))
    for name, arr in sd.items():
        assert isinstance(arr, np.ndarray), name
        assert list(arr.shape) == list(header[name]["shape"]), (name, arr.shape)
        if arr.nbytes <= (1 << 22):
            arr.tobytes()  # touch every element
    if _reference_deserialize is not None:
        try:
            ref = _reference_deserialize(bytes(blob))
        except Exception as e:  # noqa: BLE001 - any failure of the reference is a disagreement
            raise AssertionError(f"we accepted a file the reference parser rejects: {e}") from None
        ref = dict(ref)
        assert set(ref) == set(sd), (sorted(ref), sorted(sd))
        for name, arr in sd.items():
            r = ref[name]
            assert list(r["shape"]) == list(arr.shape), name
            if r["dtype"] != "BF16":  # widened to float32 by us
                want = np.frombuffer(bytes(r["data"]), dtype=arr.dtype.newbyteorder("<"))
                assert want.tobytes() == np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes(), name
    if mode & 4:
        save_safetensors(_OUT, sd, md or None)
        back, md2 = _read(_OUT)
        assert md2 == md
        assert list(back) == sorted(sd, key=lambda k: (-sd[k].dtype.itemsize, k))
        for name, arr in sd.items():
            b = back[name]
            assert b.dtype == arr.dtype and b.shape == arr.shape, name
            assert b.tobytes() == np.ascontiguousarray(arr).tobytes(), name


def main(argv=None) -> None:
    if atheris is None:
        raise SystemExit("atheris is not installed: pip install atheris")
    atheris.Setup(list(sys.argv if argv is None else argv), TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
