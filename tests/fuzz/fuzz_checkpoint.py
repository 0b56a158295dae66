"""Atheris harness: ``mobilevit.checkpoint.load_checkpoint`` on arbitrary bytes.

Input: one mode byte, then a payload.  ``mode & 7`` forces the container format so the fuzzer
spends its time inside each reader instead of in format detection:

* 0, 5, 6, 7 -- raw: the payload is the file;
* 1 -- zip: the payload with ``PK\\x03\\x04`` put in front unless already there;
* 2 -- zip, built: ``k = payload[0] % 5`` storage records ``archive/data/0..k-1`` whose sizes are the
  next k little-endian u16s, then the rest is ``archive/data.pkl``; the harness writes a real
  torch-style stored zip (byteorder, version, data.pkl, data/*) around it;
* 3 -- legacy: the three leading pickles of a legacy ``torch.save`` (magic number, protocol 1001,
  sys_info) are put in front, the payload is the object pickle + key list + storages;
* 4 -- safetensors, built: a u16 header length, then header + data (8-byte prefix written for it).

``(mode >> 3) & 1`` sets ``prefer_ema``; ``(mode >> 5) & 3`` picks how the bytes are handed over:
0/3 bytes, 1 a binary file object, 2 a file path (read through a copy-on-write mmap).

Accepted outcomes: a ``{str: ndarray}`` dict, or :class:`CheckpointError`.  Any other exception is a
bug (the public contract is "every problem with a file raises CheckpointError").  Every returned
array is read in full (up to 4 MiB), so a view that reaches outside the file faults here.

Run::

    python tests/fuzz/fuzz_checkpoint.py tests/fuzz/corpus/checkpoint -max_total_time=60
"""
from __future__ import annotations

import contextlib
import io
import os
import pickle
import struct
import sys
import tempfile
import warnings
import zipfile

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
    from mobilevit.checkpoint import CheckpointError, load_checkpoint

MODE_RAW, MODE_ZIP, MODE_ZIP_BUILT, MODE_LEGACY, MODE_SAFETENSORS = 0, 1, 2, 3, 4

# What torch.save writes before the object in the legacy (non-zip) format.
LEGACY_HEADER = (pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
                 + pickle.dumps(1001, protocol=2)
                 + pickle.dumps({"protocol_version": 1001, "little_endian": True,
                                 "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2))

_TMP = tempfile.mkdtemp(prefix="mv-fuzz-ckpt-")
_PATH = os.path.join(_TMP, "input.pt")


def _pattern(n: int, salt: int) -> bytes:
    return bytes((i * 37 + salt * 11 + 1) & 0xFF for i in range(n))


def build_zip(payload: bytes) -> bytes:
    """Mode 2: a stored torch zip with the payload as data.pkl and k sized storage records."""
    k = payload[0] % 5 if payload else 0
    sizes = [int.from_bytes(payload[1 + 2 * i:3 + 2 * i].ljust(2, b"\0"), "little") for i in range(k)]
    pkl = payload[1 + 2 * k:]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        for i, n in enumerate(sizes):
            z.writestr(f"archive/data/{i}", _pattern(n, i))
        z.writestr("archive/version", "3\n")
    return out.getvalue()


def build_legacy(payload: bytes) -> bytes:
    return LEGACY_HEADER + payload


def build_safetensors(payload: bytes) -> bytes:
    n = int.from_bytes(payload[:2].ljust(2, b"\0"), "little")
    rest = payload[2:]
    return struct.pack("<Q", min(n, len(rest))) + rest


def file_bytes(data: bytes) -> bytes:
    """The checkpoint file an input stands for (used by make_corpus.py and for reproducers)."""
    mode, payload = data[0], data[1:]
    kind = mode & 7
    if kind == MODE_ZIP:
        return payload if payload.startswith(b"PK\x03\x04") else b"PK\x03\x04" + payload
    if kind == MODE_ZIP_BUILT:
        return build_zip(payload)
    if kind == MODE_LEGACY:
        return build_legacy(payload)
    if kind == MODE_SAFETENSORS:
        return build_safetensors(payload)
    return payload


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    mode = data[0]
    blob = file_bytes(data)
    how = (mode >> 5) & 3
    if how == 1:
        src = io.BytesIO(blob)
    elif how == 2:
        with open(_PATH, "wb") as f:
            f.write(blob)
        src = _PATH
    else:
        src = blob
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN/Inf warnings are expected on fuzzed weights
        try:
            sd = load_checkpoint(src, prefer_ema=bool(mode & 8))
        except CheckpointError:
            return
    assert isinstance(sd, dict) and sd
    for k, v in sd.items():
        assert isinstance(k, str), k
        assert isinstance(v, np.ndarray), (k, type(v))
        if v.size and v.nbytes <= (1 << 22):
            v.tobytes()  # read every element
        elif v.size:
            v.reshape(-1)[[0, -1]]


def main(argv=None) -> None:
    if atheris is None:
        raise SystemExit("atheris is not installed: pip install atheris")
    atheris.Setup(list(sys.argv if argv is None else argv), TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
