"""Containers written by ``torch.save``: the zip format (torch >= 1.6) and the legacy pickle stream.

Zip: a hardened reader of the central directory and local headers (ZIP64 included), written for this
format rather than general archives.  It never decompresses and never extracts: the records we need
(``data.pkl``, ``byteorder``, ``version``, ``data/<key>``) must be *stored*, and tensors are NumPy views
of the file's private in-memory copy at each record's payload offset.  Checks (each raises :class:`CheckpointError`
naming the record / offset / rule):

* end-of-central-directory found with an exact comment length; ZIP64 locator and record in bounds;
  single disk; the central directory ends exactly where the (ZIP64) end record starts;
* every entry: no encryption, ASCII/UTF-8 name, unique name, ZIP64 extra parsed strictly, local header
  signature/name/method agree with the central directory, payload inside the file and before the
  central directory, local records do not overlap;
* every name starts with the directory of the *first* entry (torch's rule; not hard-coded ``archive/``);
* TorchScript archives (``constants.pkl`` or ``code/``) are refused, never dispatched elsewhere;
* ``byteorder`` absent means little; ``little``/``big`` only;
* every storage referenced by ``data.pkl`` has a stored ``data/<key>`` record whose length equals
  ``numel * element size``, checked before any tensor is returned.

Legacy (``_use_new_zipfile_serialization=False``): magic number, protocol 1001, sys_info, the object
pickle (6-tuple persistent ids, optional storage views), the sorted key list, then for each key an int64
element count and the raw little-endian bytes; counts must match, no trailing bytes.
"""

from __future__ import annotations

import struct
from typing import Optional

import numpy as np

from .errors import CheckpointError
from .source import _open_source, _Source
from .inert import Global
from .limits import Limits
from .pickle_vm import unpickle
from .torch_objects import StorageRef, _CopyBudget, materialize_tree, parse_storage_pid

__all__ = ["read_torch_file", "read_torch_tree", "detect_format_of", "ZipDirectory"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_EOCD = struct.Struct("<4sHHHHIIH")             # 22 bytes
_Z64_LOCATOR = struct.Struct("<4sIQI")          # 20 bytes
_Z64_EOCD = struct.Struct("<4sQHHIIQQQQ")       # 56 bytes
_CDIR = struct.Struct("<4sHHHHHHIIIHHHHHII")    # 46 bytes
_LOCAL = struct.Struct("<4sHHHHHIIIHH")         # 30 bytes
_U16 = struct.Struct("<H")

_MAX_ENTRIES = 1_000_000
_MAX_SMALL_RECORD = 4096  # byteorder / version


class _Entry:
    __slots__ = ("name", "method", "flags", "csize", "usize", "header_offset", "data_start", "data_end")

    def __init__(self, name, method, flags, csize, usize, header_offset):
        self.name = name
        self.method = method
        self.flags = flags
        self.csize = csize
        self.usize = usize
        self.header_offset = header_offset
        self.data_start = -1
        self.data_end = -1


class ZipDirectory:
    """The validated directory of a zip file held in ``src.buf`` (no data is decompressed)."""

    def __init__(self, src: _Source):
        self.src = src
        self.entries: dict[str, _Entry] = {}
        self.order: list[str] = []
        self._parse()

    def _err(self, msg: str):
        raise CheckpointError(f"{self.src.name}: zip: {msg}")

    def _parse(self) -> None:
        buf, size = self.src.buf, self.src.size
        if size < _EOCD.size:
            self._err("file too small for an end-of-central-directory record")
        lo = max(0, size - _EOCD.size - 0xFFFF)
        tail = bytes(buf[lo:size])
        pos = len(tail) - _EOCD.size
        eocd_at = -1
        while pos >= 0:
            pos = tail.rfind(b"PK\x05\x06", 0, pos + 4)
            if pos < 0:
                break
            comment_len = _U16.unpack_from(tail, pos + 20)[0]
            if pos + _EOCD.size + comment_len == len(tail):
                eocd_at = lo + pos
                break
            pos -= 1
        if eocd_at < 0:
            self._err("no end-of-central-directory record (truncated or not a zip)")
        (_, disk, cd_disk, n_disk, n_total, cd_size, cd_offset, _) = _EOCD.unpack_from(buf, eocd_at)
        cd_end_limit = eocd_at
        # ZIP64: locator right before the EOCD.
        loc_at = eocd_at - _Z64_LOCATOR.size
        if loc_at >= 0 and bytes(buf[loc_at:loc_at + 4]) == b"PK\x06\x07":
            _, z_disk, z64_off, n_disks = _Z64_LOCATOR.unpack_from(buf, loc_at)
            if z_disk != 0 or n_disks not in (0, 1):
                self._err("multi-disk ZIP64 archives are not supported")
            if z64_off + _Z64_EOCD.size > loc_at:
                self._err(f"ZIP64 end record offset {z64_off} out of bounds")
            (sig, rec_size, _, _, disk, cd_disk, n_disk, n_total, cd_size,
             cd_offset) = _Z64_EOCD.unpack_from(buf, z64_off)
            if sig != b"PK\x06\x06":
                self._err(f"bad ZIP64 end record signature at offset {z64_off}")
            if rec_size < _Z64_EOCD.size - 12 or z64_off + 12 + rec_size > loc_at:
                self._err(f"ZIP64 end record size {rec_size} out of bounds")
            cd_end_limit = z64_off
        if disk != 0 or cd_disk != 0 or n_disk != n_total:
            self._err("multi-disk archives are not supported")
        if n_total > _MAX_ENTRIES:
            self._err(f"{n_total} entries exceed the cap of {_MAX_ENTRIES}")
        if cd_offset > cd_end_limit or cd_size != cd_end_limit - cd_offset:
            self._err(f"central directory (offset {cd_offset}, size {cd_size}) does not end at the "
                      f"end record (offset {cd_end_limit})")
        if cd_size < n_total * _CDIR.size:
            self._err(f"central directory of {cd_size} bytes cannot hold {n_total} entries")

        p = cd_offset
        cd_end = cd_offset + cd_size
        for i in range(n_total):
            if p + _CDIR.size > cd_end:
                self._err(f"central directory entry {i} truncated at offset {p}")
            (sig, _, _, flags, method, _, _, _, csize, usize, nlen, elen, clen, disk_start, _, _,
             lho) = _CDIR.unpack_from(buf, p)
            if sig != b"PK\x01\x02":
                self._err(f"bad central directory signature for entry {i} at offset {p}")
            var_end = p + _CDIR.size + nlen + elen + clen
            if var_end > cd_end:
                self._err(f"central directory entry {i} runs past the directory")
            raw_name = bytes(buf[p + _CDIR.size:p + _CDIR.size + nlen])
            extra = bytes(buf[p + _CDIR.size + nlen:p + _CDIR.size + nlen + elen])
            try:
                name = raw_name.decode("utf-8")
            except UnicodeDecodeError:
                self._err(f"entry {i} name is not UTF-8")
            if not name or "\x00" in name:
                self._err(f"entry {i} has an empty name or a NUL byte")
            if flags & 0x41:
                self._err(f"record {name!r} is encrypted")
            usize, csize, lho, disk_start = self._zip64_extra(name, extra, usize, csize, lho, disk_start)
            if disk_start != 0:
                self._err(f"record {name!r} starts on disk {disk_start}")
            if name in self.entries:
                self._err(f"duplicate record name {name!r}")
            self.entries[name] = _Entry(name, method, flags, csize, usize, lho)
            self.order.append(name)
            p = var_end
        if p != cd_end:
            self._err(f"{cd_end - p} unexplained bytes at the end of the central directory")

        # Local headers: agree with the directory, payloads in bounds, no overlap.
        for e in self.entries.values():
            h = e.header_offset
            if h + _LOCAL.size > cd_offset:
                self._err(f"record {e.name!r}: local header offset {h} beyond the data area")
            (sig, _, lflags, lmethod, _, _, _, _, _, nlen, elen) = _LOCAL.unpack_from(buf, h)
            if sig != b"PK\x03\x04":
                self._err(f"record {e.name!r}: bad local header signature at offset {h}")
            if lmethod != e.method:
                self._err(f"record {e.name!r}: local method {lmethod} != directory method {e.method}")
            start = h + _LOCAL.size + nlen + elen
            if bytes(buf[h + _LOCAL.size:h + _LOCAL.size + nlen]) != e.name.encode("utf-8"):
                self._err(f"record {e.name!r}: local header name differs from the directory")
            end = start + e.csize
            if end > cd_offset:
                self._err(f"record {e.name!r}: payload [{start}, {end}) runs past the data area "
                          f"(central directory at {cd_offset})")
            e.data_start, e.data_end = start, end
        spans = sorted(self.entries.values(), key=lambda e: e.header_offset)
        for a, b in zip(spans, spans[1:]):
            if a.data_end > b.header_offset:
                self._err(f"records {a.name!r} and {b.name!r} overlap")

    def _zip64_extra(self, name, extra: bytes, usize, csize, lho, disk):
        need = [usize == 0xFFFFFFFF, csize == 0xFFFFFFFF, lho == 0xFFFFFFFF, disk == 0xFFFF]
        q = 0
        found = False
        while q + 4 <= len(extra):
            tag, ln = struct.unpack_from("<HH", extra, q)
            body = extra[q + 4:q + 4 + ln]
            if len(body) != ln:
                self._err(f"record {name!r}: extra field runs past its header")
            if tag == 0x0001:
                if found:
                    self._err(f"record {name!r}: two ZIP64 extra fields")
                found = True
                r = 0
                vals = [usize, csize, lho]
                for idx in range(3):
                    if need[idx]:
                        if r + 8 > ln:
                            self._err(f"record {name!r}: ZIP64 extra field too short")
                        vals[idx] = struct.unpack_from("<Q", body, r)[0]
                        r += 8
                if need[3]:
                    if r + 4 > ln:
                        self._err(f"record {name!r}: ZIP64 extra field too short")
                    disk = struct.unpack_from("<I", body, r)[0]
                usize, csize, lho = vals
            q += 4 + ln
        if q != len(extra) and len(extra) - q >= 4:
            self._err(f"record {name!r}: malformed extra fields")
        if any(need[:3]) and not found:
            self._err(f"record {name!r}: 0xFFFFFFFF size/offset without a ZIP64 extra field")
        return usize, csize, lho, disk

    def payload(self, name: str, *, max_size: Optional[int] = None):
        """Bounds of a stored record's payload: ``(start, size)``."""
        e = self.entries.get(name)
        if e is None:
            self._err(f"missing record {name!r}")
        if e.method != 0:
            self._err(f"record {name!r} is compressed (method {e.method}); torch.save writes stored "
                      f"records only and compressed ones are refused (zip-bomb guard)")
        if e.csize != e.usize:
            self._err(f"stored record {name!r} has compressed size {e.csize} != size {e.usize}")
        if max_size is not None and e.usize > max_size:
            self._err(f"record {name!r} of {e.usize} bytes exceeds the cap of {max_size}")
        return e.data_start, e.usize


# ----------------------------------------------------------------------------------------------------
# Format detection
# ----------------------------------------------------------------------------------------------------

def detect_format_of(src: _Source) -> str:
    buf, size = src.buf, src.size
    head = bytes(buf[:min(size, 512)])
    if size < 8:
        raise CheckpointError(f"{src.name}: {size}-byte file is too small to be a checkpoint")
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[257:262] == b"ustar":
        raise CheckpointError(f"{src.name}: legacy tar checkpoint (torch <= 0.1.10) is not supported; "
                              f"re-save it with a current torch as a state dict")
    n = struct.unpack_from("<Q", head, 0)[0]
    if head[8:9] == b"{":
        # Checked before pickles: a header length like 0x280 starts with the bytes of PROTO 2.
        # Legacy torch files have magic-number bytes at offset 8, never "{".
        return "safetensors"  # the reader validates the length field
    if head[0] == 0x80:
        if _legacy_magic_ok(buf, size):
            return "legacy"
        raise CheckpointError(f"{src.name}: a plain pickle, not a torch.save checkpoint "
                              f"(no torch magic number)")
    if head[8:9] and head[8:9] in b" \t\r\n" and 2 <= n <= size - 8:
        # JSON may be preceded by whitespace padding; look a little way in for the opening brace.
        if bytes(buf[8:8 + min(n, 4096)]).lstrip(b" \t\r\n")[:1] == b"{":
            return "safetensors"
    if head[:4] == b"PK\x05\x06":
        raise CheckpointError(f"{src.name}: empty zip archive")
    raise CheckpointError(f"{src.name}: unknown checkpoint format (not a torch zip, legacy torch "
                          f"pickle or safetensors file; first bytes {head[:8]!r})")


class _TinyLimits(Limits):
    max_ops = 64
    max_stack = 64
    max_memo = 16


def _legacy_magic_ok(buf, size) -> bool:
    try:
        obj, _ = unpickle(buf, 0, min(size, 256), limits=_TinyLimits)
    except CheckpointError:
        return False
    return obj == LEGACY_MAGIC and not isinstance(obj, bool)


# ----------------------------------------------------------------------------------------------------
# Storage registry shared by both container kinds
# ----------------------------------------------------------------------------------------------------

class _Storages:
    def __init__(self, src_name: str):
        self.name = src_name
        self.by_key: dict[str, StorageRef] = {}

    def get(self, key, type_name, info, location, numel) -> StorageRef:
        ref = self.by_key.get(key)
        code, itemsize = info
        if ref is None:
            ref = StorageRef(key, type_name, code, itemsize, numel, location)
            self.by_key[key] = ref
        elif (ref.type_name, ref.numel) != (type_name, numel):
            raise CheckpointError(
                f"{self.name}: storage {key!r} is declared twice with different types/sizes "
                f"({ref.type_name}[{ref.numel}] vs {type_name}[{numel}])")
        return ref


def _array_at(buf, offset: int, ref: StorageRef, byteorder: str) -> np.ndarray:
    code = "u2" if ref.code == "bf16" else ("?" if ref.code == "b1" else ref.code)
    dt = np.dtype(code)
    if dt.itemsize > 1:
        dt = dt.newbyteorder("<" if byteorder == "little" else ">")
    if ref.numel == 0:
        return np.empty(0, dt)
    return np.frombuffer(buf, dtype=dt, count=ref.numel, offset=offset)


# ----------------------------------------------------------------------------------------------------
# Zip checkpoints
# ----------------------------------------------------------------------------------------------------

def _read_zip(src: _Source, limits=Limits):
    z = ZipDirectory(src)
    first = z.order[0] if z.order else ""
    if "/" not in first:
        raise CheckpointError(f"{src.name}: zip: first record {first!r} is not inside a directory "
                              f"(not a torch.save archive)")
    prefix = first.split("/", 1)[0] + "/"
    for nm in z.order:
        if not nm.startswith(prefix):
            raise CheckpointError(f"{src.name}: zip: record {nm!r} is outside the archive directory "
                                  f"{prefix!r}")
    if prefix + "constants.pkl" in z.entries or any(n.startswith(prefix + "code/") for n in z.order):
        raise CheckpointError(f"{src.name}: TorchScript archive (torch.jit.save); only state-dict "
                              f"checkpoints are read, TorchScript is refused and never executed")
    for nm in z.order:
        if nm.startswith(prefix + "data/") and z.entries[nm].method != 0:
            raise CheckpointError(f"{src.name}: zip: storage record {nm!r} is compressed (method "
                                  f"{z.entries[nm].method}); refused (zip-bomb guard)")
    byteorder = "little"
    if prefix + "byteorder" in z.entries:
        s, n = z.payload(prefix + "byteorder", max_size=_MAX_SMALL_RECORD)
        raw = bytes(src.buf[s:s + n])
        if raw not in (b"little", b"big"):
            raise CheckpointError(f"{src.name}: byteorder record is {raw[:32]!r}, not 'little' or 'big'")
        byteorder = raw.decode()
    for vname in (prefix + "version", prefix + ".data/version"):
        if vname in z.entries:
            s, n = z.payload(vname, max_size=_MAX_SMALL_RECORD)
            raw = bytes(src.buf[s:s + n]).strip()
            if not raw.isdigit() or not 1 <= int(raw) <= 1000:
                raise CheckpointError(f"{src.name}: version record is {raw[:32]!r}, not a small integer")
    pkl = prefix + "data.pkl"
    if pkl not in z.entries:
        raise CheckpointError(f"{src.name}: zip: no {pkl!r} record (not a torch.save archive)")
    s, n = z.payload(pkl, max_size=limits.max_pickle_bytes)

    storages = _Storages(src.name)

    def persistent_load(pid):
        key, type_name, info, location, numel, _ = parse_storage_pid(pid, legacy=False)
        return storages.get(key, type_name, info, location, numel)

    budget = _CopyBudget(limits.max_copy_slack_bytes)
    try:
        obj, end = unpickle(src.buf, s, s + n, persistent_load, limits, budget)
    except CheckpointError as e:
        raise type(e)(f"{src.name}: {pkl}: {e}") from None
    if end != s + n:
        raise CheckpointError(f"{src.name}: {pkl}: {s + n - end} bytes after STOP")

    # Every referenced storage: a stored record of exactly numel * itemsize bytes.
    for key, ref in storages.by_key.items():
        rec = prefix + "data/" + key
        if rec not in z.entries:
            raise CheckpointError(f"{src.name}: storage {key!r} has no record {rec!r}")
        start, size = z.payload(rec)
        if size != ref.nbytes:
            raise CheckpointError(
                f"{src.name}: record {rec!r} holds {size} bytes but storage {key!r} declares "
                f"{ref.numel} x {ref.itemsize} = {ref.nbytes} bytes")

        def loader(r, _start=start, _bo=byteorder, _buf=src.buf):
            return _array_at(_buf, _start, r, _bo)
        ref._loader = loader
        budget.allow(4 * size)
    return obj


# ----------------------------------------------------------------------------------------------------
# Legacy pickle-stream checkpoints
# ----------------------------------------------------------------------------------------------------

def _read_legacy(src: _Source, limits=Limits):
    buf, size = src.buf, src.size

    def small(pos, what):
        try:
            return unpickle(buf, pos, size, limits=limits)
        except CheckpointError as e:
            raise type(e)(f"{src.name}: legacy {what}: {e}") from None

    magic, pos = small(0, "magic number")
    if magic != LEGACY_MAGIC or isinstance(magic, bool):
        raise CheckpointError(f"{src.name}: invalid legacy magic number")
    proto, pos = small(pos, "protocol version")
    if proto != LEGACY_PROTOCOL or isinstance(proto, bool):
        raise CheckpointError(f"{src.name}: legacy protocol version {proto!r} (expected 1001)")
    sys_info, pos = small(pos, "sys_info")
    if not isinstance(sys_info, dict):
        raise CheckpointError(f"{src.name}: legacy sys_info is not a dict")

    storages = _Storages(src.name)
    views: dict[str, tuple] = {}

    def persistent_load(pid):
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module":
            if not isinstance(pid[1], Global):
                raise CheckpointError("legacy 'module' persistent id without a class global")
            return pid[1]  # a full-module save: the class stays an inert marker
        key, type_name, info, location, numel, view = parse_storage_pid(pid, legacy=True)
        root = storages.get(key, type_name, info, location, numel)
        if view is None:
            return root
        if (not isinstance(view, tuple) or len(view) != 3 or not isinstance(view[0], str)
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in view[1:])):
            raise CheckpointError(f"legacy storage {key!r}: malformed view metadata {view!r}")
        vkey, voff, vsize = view
        if voff + vsize > numel:
            raise CheckpointError(f"legacy storage view {vkey!r} [{voff}, {voff + vsize}) is outside "
                                  f"storage {key!r} of {numel} elements")
        if vkey in views:
            if views[vkey][1:] != (key, voff, vsize):
                raise CheckpointError(f"legacy storage view {vkey!r} declared twice differently")
            return views[vkey][0]
        if vkey in storages.by_key:
            raise CheckpointError(f"legacy storage view key {vkey!r} collides with a storage key")
        vref = StorageRef(vkey, type_name, root.code, root.itemsize, vsize, location)
        vref.root, vref.root_offset = root, voff
        views[vkey] = (vref, key, voff, vsize)
        return vref

    budget = _CopyBudget(limits.max_copy_slack_bytes)
    try:
        obj, pos = unpickle(buf, pos, size, persistent_load, limits, budget)
    except CheckpointError as e:
        raise type(e)(f"{src.name}: legacy object pickle: {e}") from None
    keys, pos = small(pos, "storage key list")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CheckpointError(f"{src.name}: legacy storage key list is not a list of strings")
    if len(set(keys)) != len(keys):
        raise CheckpointError(f"{src.name}: legacy storage key list has duplicates")
    for key in keys:
        ref = storages.by_key.get(key)
        if ref is None:
            raise CheckpointError(f"{src.name}: legacy storage {key!r} has data but is never used "
                                  f"(its element size is unknown)")
        if pos + 8 > size:
            raise CheckpointError(f"{src.name}: truncated before the size of legacy storage {key!r}")
        count = struct.unpack_from("<q", buf, pos)[0]
        pos += 8
        if count != ref.numel:
            raise CheckpointError(f"{src.name}: legacy storage {key!r} records {count} elements but "
                                  f"its persistent id declares {ref.numel}")
        if pos + ref.nbytes > size:
            raise CheckpointError(f"{src.name}: truncated inside legacy storage {key!r} (needs "
                                  f"{ref.nbytes} bytes at offset {pos}, file has {size - pos})")

        def loader(r, _start=pos, _buf=buf):
            return _array_at(_buf, _start, r, "little")
        ref._loader = loader
        budget.allow(4 * ref.nbytes)
        pos += ref.nbytes
    missing = sorted(set(storages.by_key) - set(keys))
    if missing:
        raise CheckpointError(f"{src.name}: legacy storages without data: {missing[:5]}")
    if pos != size:
        raise CheckpointError(f"{src.name}: {size - pos} unexpected bytes after the last legacy storage")
    return obj


# ----------------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------------

def read_torch_tree(path_or_fileobj, limits=Limits):
    """Parse a torch.save file into an inert tree whose tensors are lazy :class:`TensorRef`."""
    src = _open_source(path_or_fileobj)
    fmt = detect_format_of(src)
    if fmt == "zip":
        return _read_zip(src, limits)
    if fmt == "legacy":
        return _read_legacy(src, limits)
    raise CheckpointError(f"{src.name}: a {fmt} file, not a torch.save checkpoint")


def read_torch_file(path_or_fileobj, *, materialize: bool = True, limits=Limits):
    """Read a torch.save file (zip or legacy) without torch.

    Returns the unpickled object tree: dicts, lists, tuples and scalars as Python values, tensors as
    NumPy arrays (or lazy :class:`TensorRef` with ``materialize=False``), every other object as an
    inert :class:`Global` / :class:`Call` marker.  Unsupported tensor kinds stay as
    :class:`UnsupportedTensor` markers.
    """
    tree = read_torch_tree(path_or_fileobj, limits)
    return materialize_tree(tree, limits) if materialize else tree
