"""A restricted, interpreting unpickler for PyTorch checkpoints.

Nothing in a pickle is ever imported or called.  This module is a small stack machine over the pickle
opcode bytes (protocols 2-4, the subset ``torch.save`` and ``pickle`` produce for state dicts and
training checkpoints) that builds an inert object tree:

* plain data (None, bool, int, float, str, bytes, tuple, list, dict, set) is built as Python data;
* ``GLOBAL`` / ``STACK_GLOBAL`` push an inert :class:`Global` marker (a module name and a qualified
  name; no import happens);
* ``REDUCE`` / ``NEWOBJ`` on a marker produce an inert :class:`Call` node, except for a short list of
  torch rebuild functions that are *pattern matched* (never called) into :class:`TensorRef` /
  :class:`UnsupportedTensor`, and ``collections.OrderedDict()`` which becomes a ``dict``;
* ``REDUCE`` / ``NEWOBJ`` whose callable is a known-dangerous global (``os.system``,
  ``builtins.eval``, ``subprocess.Popen`` ...) raises :class:`UnsafeCheckpointError` naming it --
  even though it would never be called, such a file is hostile and is refused as a whole;
* ``BINPERSID`` hands the persistent id to a callback supplied by the container reader
  (:mod:`torch_zip`), which turns ``('storage', ...)`` ids into :class:`StorageRef`.

Every structural problem (truncation, stack underflow, bad memo index, unknown opcode, caps exceeded)
raises :class:`CheckpointError` with the opcode name and byte offset.  Memory is bounded by the caps in
:class:`Limits`, never by sizes claimed inside the file.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Optional

import numpy as np

from .errors import CheckpointError, UnsafeCheckpointError
from .limits import Limits

__all__ = [
    "Global", "Call", "StorageRef", "TensorRef", "UnsupportedTensor", "Limits", "PickleVM",
    "unpickle", "parse_storage_pid", "STORAGE_TYPES", "materialize_tree", "brief",
]


# ----------------------------------------------------------------------------------------------------
# Bounded printing: error messages must not expand memo-shared structures
# ----------------------------------------------------------------------------------------------------

def brief(obj, limit: int = 120) -> str:
    """A ``repr`` of ``obj`` cut at about ``limit`` characters, in time bounded by ``limit``.

    ``repr`` of a pickle-built object is unsafe: a tuple memoised once and referenced twice per level
    prints 2**depth leaves from a few bytes of pickle.  This walks at most ``limit`` nodes (and at most
    4 levels), and cuts long strings.
    """
    out: list = []
    budget = [limit]

    def emit(text: str) -> None:
        out.append(text)
        budget[0] -= len(text)

    def go(o, depth: int) -> None:
        if budget[0] <= 0:
            return
        if isinstance(o, (str, bytes, bytearray)):
            cut = o[:max(budget[0], 8)]
            emit(repr(cut) + ("..." if len(cut) < len(o) else ""))
        elif o is None or isinstance(o, (bool, float)):
            emit(repr(o))
        elif isinstance(o, int):
            emit(repr(o) if o.bit_length() <= 256 else f"<int of {o.bit_length()} bits>")
        elif isinstance(o, (tuple, list, set, frozenset, dict)):
            opener, closer = {tuple: "()", list: "[]", dict: "{}"}.get(type(o), "{}")
            if depth >= 4:
                emit(f"{opener}...{closer}")
                return
            emit(opener)
            items = o.items() if isinstance(o, dict) else o
            for i, item in enumerate(items):
                if budget[0] <= 0:
                    emit("...")
                    break
                if i:
                    emit(", ")
                if isinstance(o, dict):
                    go(item[0], depth + 1)
                    emit(": ")
                    go(item[1], depth + 1)
                else:
                    go(item, depth + 1)
            if isinstance(o, tuple) and len(o) == 1:
                emit(",")
            emit(closer)
        elif isinstance(o, (Global, Call, StorageRef, TensorRef, UnsupportedTensor)):
            emit(repr(o))  # bounded: names are capped, shapes are validated ints
        else:
            emit(f"<{type(o).__name__}>")

    go(obj, 0)
    text = "".join(out)
    return text if len(text) <= limit + 16 else text[:limit] + "..."


# ----------------------------------------------------------------------------------------------------
# Inert object model
# ----------------------------------------------------------------------------------------------------

class Global:
    """An inert reference to ``module.name`` from a GLOBAL opcode.  Never imported."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str):
        self.module = module
        self.name = name

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"

    def __repr__(self) -> str:
        return f"<inert global {self.qualname}>"


class Call:
    """An inert ``REDUCE`` / ``NEWOBJ`` node: what the pickle *would* have called, with what.

    ``state`` holds the argument of a later ``BUILD`` (``None`` if there was none).  Nothing here is
    ever executed; the node only records the structure so that callers can report it.
    """

    __slots__ = ("func", "args", "kwargs", "state", "kind")

    def __init__(self, func: Any, args: tuple, kind: str, kwargs: Optional[dict] = None):
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.state = None
        self.kind = kind  # "reduce" | "newobj"

    @property
    def callable_name(self) -> str:
        # Iterative: REDUCE on the result of REDUCE nests Calls as deep as the pickle is long.
        f, depth = self.func, 0
        while isinstance(f, Call):
            f, depth = f.func, depth + 1
        name = f.qualname if isinstance(f, Global) else type(f).__name__
        if depth == 0:
            return name
        return f"<result of {name}>" if depth == 1 else f"<result of {depth} nested calls of {name}>"

    def __repr__(self) -> str:
        return f"<inert {self.kind} of {self.callable_name}>"


# torch storage class name -> (numpy dtype code, element size).  "bf16" is read as uint16 and widened
# to float32 at materialization; a None code marks a storage type that we recognise (so its record size
# is still checked) but refuse to turn into arrays (quantized / complex).
STORAGE_TYPES: dict[str, tuple[Optional[str], int]] = {
    "DoubleStorage": ("f8", 8),
    "FloatStorage": ("f4", 4),
    "HalfStorage": ("f2", 2),
    "BFloat16Storage": ("bf16", 2),
    "LongStorage": ("i8", 8),
    "IntStorage": ("i4", 4),
    "ShortStorage": ("i2", 2),
    "CharStorage": ("i1", 1),
    "ByteStorage": ("u1", 1),
    "BoolStorage": ("b1", 1),
    "UntypedStorage": ("u1", 1),
    "ComplexFloatStorage": (None, 8),
    "ComplexDoubleStorage": (None, 16),
    "QInt8Storage": (None, 1),
    "QUInt8Storage": (None, 1),
    "QInt32Storage": (None, 4),
    "QUInt4x2Storage": (None, 1),
    "QUInt2x4Storage": (None, 1),
}
_STORAGE_MODULES = ("torch", "torch.cuda", "torch.storage")

# torch dtype globals (``_rebuild_tensor_v3``) -> numpy code.  None: recognised, refused.
_TORCH_DTYPES: dict[str, Optional[tuple[str, int]]] = {
    "float64": ("f8", 8), "double": ("f8", 8),
    "float32": ("f4", 4), "float": ("f4", 4),
    "float16": ("f2", 2), "half": ("f2", 2),
    "bfloat16": ("bf16", 2),
    "int64": ("i8", 8), "long": ("i8", 8),
    "int32": ("i4", 4), "int": ("i4", 4),
    "int16": ("i2", 2), "short": ("i2", 2),
    "int8": ("i1", 1), "uint8": ("u1", 1),
    "bool": ("b1", 1),
    "uint16": ("u2", 2), "uint32": ("u4", 4), "uint64": ("u8", 8),
}

_INT64_MAX = (1 << 63) - 1
_MAX_NDIM = 64
_MAX_DIM = (1 << 31) - 1  # one tensor dimension: the C core indexes dimensions with int


class StorageRef:
    """One storage record (``data/<key>`` in a zip, or a legacy inline storage).

    ``numel`` counts elements of ``code``; for a legacy *view* storage, ``root``/``root_offset`` name
    the storage whose elements it aliases.  ``array()`` returns the raw 1-D NumPy view in the file's
    byte order, created once by the container reader's ``loader``.
    """

    __slots__ = ("key", "type_name", "code", "itemsize", "numel", "location", "root", "root_offset",
                 "_loader", "_array")

    def __init__(self, key: str, type_name: str, code: Optional[str], itemsize: int, numel: int,
                 location: str):
        self.key = key
        self.type_name = type_name
        self.code = code
        self.itemsize = itemsize
        self.numel = numel
        self.location = location
        self.root: Optional[StorageRef] = None
        self.root_offset = 0
        self._loader: Optional[Callable[[StorageRef], np.ndarray]] = None
        self._array: Optional[np.ndarray] = None

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize

    def array(self) -> np.ndarray:
        if self._array is None:
            if self.root is not None:
                base = self.root.array()
                self._array = base[self.root_offset:self.root_offset + self.numel]
            else:
                if self._loader is None:
                    raise CheckpointError(f"storage {self.key!r} has no data source")
                arr = self._loader(self)
                if arr.shape != (self.numel,):
                    raise CheckpointError(
                        f"storage {self.key!r}: loader returned {arr.shape}, expected ({self.numel},)")
                self._array = arr
        return self._array

    def __repr__(self) -> str:
        return f"<storage {self.key!r} {self.type_name} numel={self.numel}>"


class UnsupportedTensor:
    """A tensor-like entry we recognise but refuse to convert (quantized, sparse, float8, ...)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason[:300]

    def __repr__(self) -> str:
        return f"<unsupported tensor: {self.reason}>"


class TensorRef:
    """A dense strided view of a :class:`StorageRef`, validated against the storage's bounds.

    Sizes, strides and offset are in elements.  :meth:`materialize` returns a NumPy array: a zero-copy
    view of the file mapping when the view is contiguous, aligned and native-endian; otherwise a copy.
    bfloat16 is widened to float32.
    """

    __slots__ = ("storage", "offset", "shape", "stride", "code", "itemsize", "budget")

    def __init__(self, storage: StorageRef, offset: int, shape: tuple, stride: tuple, code: str,
                 itemsize: int, budget: "_CopyBudget"):
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.stride = stride
        self.code = code
        self.itemsize = itemsize
        self.budget = budget

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype :meth:`materialize` returns."""
        return np.dtype("f4") if self.code == "bf16" else np.dtype(_np_code(self.code))

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def materialize(self, name: str = "<tensor>") -> np.ndarray:
        try:
            return self._materialize()
        except CheckpointError as e:
            raise CheckpointError(f"tensor {name!r}: {e}") from None

    def _materialize(self) -> np.ndarray:
        numel = self.numel
        base = self.storage.array()  # raw, file byte order; dtype "bf16" read as uint16
        if numel == 0:
            out = np.empty(self.shape, dtype=base.dtype)
        elif _is_c_contiguous(self.shape, self.stride):
            out = base[self.offset:self.offset + numel].reshape(self.shape)
        else:
            # Checked before allocating: stride-0 views or many views of one storage must not turn a
            # small file into a huge allocation.
            self.budget.spend(numel * self.itemsize)
            view = np.lib.stride_tricks.as_strided(
                base[self.offset:], shape=self.shape,
                strides=tuple(s * self.itemsize for s in self.stride), writeable=False)
            out = np.array(view, copy=True, order="C")
        if self.code == "bf16":
            self.budget.spend(numel * 4)
            u16 = out.astype("=u2", copy=False)
            out = (u16.astype(np.uint32) << 16).view(np.float32)
        elif not out.dtype.isnative:
            self.budget.spend(numel * self.itemsize)
            out = out.astype(out.dtype.newbyteorder("="))
        elif not out.flags.aligned:
            self.budget.spend(numel * self.itemsize)
            out = out.copy()
        return out

    def __repr__(self) -> str:
        return f"<tensor {self.code} shape={self.shape} storage={self.storage.key!r}>"


class _CopyBudget:
    """Bounds the bytes that materialization may *copy* (strided gathers, bf16 widening, byte swaps).

    Contiguous views cost nothing (they alias the file mapping).  The container reader sets the limit
    from the file's real storage bytes, so memory stays proportional to the file, not to the number of
    tensor entries that alias one storage or to stride-0 expansion.
    """

    def __init__(self, slack: int):
        self.limit = slack
        self.used = 0

    def allow(self, nbytes: int) -> None:
        self.limit += nbytes

    def spend(self, nbytes: int) -> None:
        if self.used + nbytes > self.limit:
            raise CheckpointError(
                f"materializing would copy more than {self.limit} bytes (cap: 4 x the file's storage "
                f"bytes + Limits.max_copy_slack_bytes); stride-0 or aliasing views expand too far")
        self.used += nbytes


def _np_code(code: str) -> str:
    return "?" if code == "b1" else code


def _is_c_contiguous(shape: tuple, stride: tuple) -> bool:
    expected = 1
    for size, st in zip(reversed(shape), reversed(stride)):
        if size != 1 and st != expected:
            return False
        expected *= size
    return True


# ----------------------------------------------------------------------------------------------------
# Dangerous globals: refused when used as a callable (never called either way).
# ----------------------------------------------------------------------------------------------------

_DANGEROUS_MODULES = frozenset({
    "os", "posix", "nt", "sys", "subprocess", "shutil", "socket", "importlib", "runpy", "pickle",
    "_pickle", "marshal", "ctypes", "code", "codeop", "pty", "webbrowser", "pdb", "bdb",
    "multiprocessing", "signal", "asyncio", "tempfile", "shelve", "dbm", "urllib", "http", "ftplib",
    "smtplib", "telnetlib", "requests", "platform", "commands", "popen2", "posixpath", "ntpath",
    "pathlib", "io", "_io", "zipimport", "imp", "types", "gc", "inspect", "threading", "_thread",
    "cProfile", "profile", "timeit", "trace", "sysconfig", "site", "builtins_", "__builtin__",
    "numpy.testing", "dill", "cloudpickle", "joblib",
})
_SAFE_BUILTINS = frozenset({
    "set", "frozenset", "bytearray", "bytes", "complex", "slice", "range", "list", "dict", "tuple",
    "int", "float", "str", "bool", "object",
})
_DANGEROUS_NAMES = frozenset({
    ("operator", "attrgetter"), ("operator", "methodcaller"), ("operator", "getitem"),
    ("functools", "partial"), ("functools", "reduce"),
    ("torch", "load"), ("torch.serialization", "load"), ("torch.serialization", "_load"),
    ("torch.serialization", "_legacy_load"), ("torch.hub", "load"), ("torch.hub", "load_state_dict_from_url"),
    ("torch._C", "_jit_compile"), ("numpy", "load"), ("numpy.lib.npyio", "load"),
    ("_codecs", "decode"),
})


def _danger(g: Global) -> bool:
    root = g.module.split(".", 1)[0]
    if g.module in ("builtins", "__builtin__"):
        return g.name not in _SAFE_BUILTINS
    if root in _DANGEROUS_MODULES or g.module in _DANGEROUS_MODULES:
        return True
    if root == "torch" and (g.module.startswith("torch.jit") or g.module.startswith("torch._dynamo")
                            or g.module.startswith("torch.package") or g.module.startswith("torch.hub")):
        return True
    return (g.module, g.name) in _DANGEROUS_NAMES


# ----------------------------------------------------------------------------------------------------
# The machine
# ----------------------------------------------------------------------------------------------------

_OPNAMES = {
    0x80: "PROTO", 0x95: "FRAME", ord("."): "STOP", ord("("): "MARK", ord("0"): "POP",
    ord("1"): "POP_MARK", ord("N"): "NONE", 0x88: "NEWTRUE", 0x89: "NEWFALSE", ord("J"): "BININT",
    ord("K"): "BININT1", ord("M"): "BININT2", 0x8A: "LONG1", 0x8B: "LONG4", ord("G"): "BINFLOAT",
    ord("X"): "BINUNICODE", 0x8C: "SHORT_BINUNICODE", ord("B"): "BINBYTES", ord("C"): "SHORT_BINBYTES",
    ord(")"): "EMPTY_TUPLE", ord("t"): "TUPLE", 0x85: "TUPLE1", 0x86: "TUPLE2", 0x87: "TUPLE3",
    ord("]"): "EMPTY_LIST", ord("l"): "LIST", ord("a"): "APPEND", ord("e"): "APPENDS",
    ord("}"): "EMPTY_DICT", ord("d"): "DICT", ord("s"): "SETITEM", ord("u"): "SETITEMS",
    0x8F: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", ord("c"): "GLOBAL", 0x93: "STACK_GLOBAL",
    ord("R"): "REDUCE", 0x81: "NEWOBJ", 0x92: "NEWOBJ_EX", ord("b"): "BUILD", ord("Q"): "BINPERSID",
    ord("q"): "BINPUT", ord("r"): "LONG_BINPUT", 0x94: "MEMOIZE", ord("h"): "BINGET",
    ord("j"): "LONG_BINGET",
}
# Opcodes we know by name only to say so in the error.
_REFUSED_OPNAMES = {
    ord("I"): "INT", ord("L"): "LONG", ord("F"): "FLOAT", ord("S"): "STRING", ord("T"): "BINSTRING",
    ord("U"): "SHORT_BINSTRING", ord("V"): "UNICODE", ord("p"): "PUT", ord("g"): "GET",
    ord("P"): "PERSID", ord("i"): "INST", ord("o"): "OBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
    0x8D: "BINUNICODE8", 0x8E: "BINBYTES8", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER",
    0x98: "READONLY_BUFFER", ord("2"): "DUP",
}

_unpack_i4 = struct.Struct("<i").unpack_from
_unpack_u4 = struct.Struct("<I").unpack_from
_unpack_u2 = struct.Struct("<H").unpack_from
_unpack_u8 = struct.Struct("<Q").unpack_from
_unpack_f8 = struct.Struct(">d").unpack_from  # BINFLOAT is big-endian


class PickleVM:
    """Interprets one pickle stream starting at ``start`` in ``data`` (bytes / memoryview / mmap).

    ``persistent_load(pid)`` is the container reader's hook for ``BINPERSID``; by default persistent
    ids are refused.  ``run()`` returns ``(obj, end)`` where ``end`` is the offset just past STOP.
    """

    def __init__(self, data, start: int = 0, end: Optional[int] = None,
                 persistent_load: Optional[Callable[[Any], Any]] = None,
                 limits: type[Limits] = Limits, budget: Optional[_CopyBudget] = None):
        self.data = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
        self.pos = start
        self._start = start
        self.end = len(data) if end is None else min(end, len(data))
        self.persistent_load = persistent_load
        self.limits = limits
        self.budget = budget if budget is not None else _CopyBudget(limits.max_copy_slack_bytes)
        self.stack: list = []
        self.metastack: list[list] = []
        self.saved_items = 0
        self.memo: dict[int, Any] = {}
        self.proto = None
        self.op_pos = start
        self.op_name = "?"
        # id -> (key, expanded item count, height) of tuple/frozenset keys already checked.  The key
        # itself is kept so that its id cannot be reused by another object while the VM runs.
        self._key_cost: dict[int, tuple] = {}
        self._composite_keys = 0

    # -- errors ----------------------------------------------------------------------------------
    def _fail(self, msg: str, exc: type = CheckpointError):
        raise exc(f"pickle: {msg} (opcode {self.op_name} at byte {self.op_pos})")

    # -- reading ---------------------------------------------------------------------------------
    def _read(self, n: int):
        p = self.pos
        if n < 0 or p + n > self.end:
            self._fail(f"truncated: needs {n} bytes, {self.end - p} left")
        self.pos = p + n
        return self.data[p:p + n]

    def _read_str_len(self, n: int) -> int:
        if n > self.limits.max_str_bytes:
            self._fail(f"string of {n} bytes exceeds the cap of {self.limits.max_str_bytes} "
                       f"(Limits.max_str_bytes)")
        if self.pos + n > self.end:
            self._fail(f"truncated: string claims {n} bytes, {self.end - self.pos} left")
        return n

    # -- stack -----------------------------------------------------------------------------------
    def _push(self, obj) -> None:
        if len(self.stack) + self.saved_items >= self.limits.max_stack:
            self._fail(f"more than {self.limits.max_stack} items on the stack (Limits.max_stack)")
        self.stack.append(obj)

    # MARK saves the current stack on ``metastack`` and starts a new one, so a mark is never an item
    # and "stack underflow" also covers popping across a MARK.
    def _pop(self):
        if not self.stack:
            self._fail("stack underflow")
        return self.stack.pop()

    def _top(self):
        if not self.stack:
            self._fail("stack underflow")
        return self.stack[-1]

    def _pop_mark(self) -> list:
        if not self.metastack:
            self._fail("no MARK to pop to")
        items = self.stack
        self.stack = self.metastack.pop()
        self.saved_items -= len(self.stack)
        return items

    def _memo_put(self, idx: int) -> None:
        if idx not in self.memo and len(self.memo) >= self.limits.max_memo:
            self._fail(f"more than {self.limits.max_memo} memo entries (Limits.max_memo)")
        self.memo[idx] = self._top()

    def _memo_get(self, idx: int) -> None:
        try:
            obj = self.memo[idx]
        except KeyError:
            self._fail(f"memo index {idx} was never stored")
        self._push(obj)

    def _check_key(self, key) -> None:
        """Dict keys / set items: plain hashable data only.

        Inserting a key hashes it (and may compare it with colliding keys), and Python does not cache
        tuple hashes, so a tuple key costs its *expanded* size: memo-shared items count every time they
        occur.  That size is computed once per distinct object (by identity, so a shared tuple costs
        its real size in the pickle) and capped by ``max_key_items``; the number of composite keys is
        capped by ``max_composite_keys`` so that crafted hash collisions stay cheap.
        """
        if isinstance(key, (tuple, frozenset)):
            self._composite_keys += 1
            if self._composite_keys > self.limits.max_composite_keys:
                self._fail(f"more than {self.limits.max_composite_keys} tuple/frozenset dict keys or set "
                           f"items (Limits.max_composite_keys)")
        self._key_size(key)

    def _key_size(self, key, depth: int = 0) -> tuple:
        """``(expanded items, height)`` of a key; refuses unhashable, too deep or too large keys."""
        if isinstance(key, (str, bytes, float, bool)) or key is None:
            return 1, 0
        if isinstance(key, int):
            if -(1 << 63) <= key < (1 << 63):
                return 1, 0
            self._fail("integer dict key outside int64")
        if isinstance(key, (Global, Call, StorageRef, TensorRef, UnsupportedTensor)):
            return 1, 0  # identity-hashed
        if isinstance(key, (tuple, frozenset)):
            lim = self.limits
            hit = self._key_cost.get(id(key))
            if hit is not None and hit[0] is key:
                size, height = hit[1], hit[2]
            else:
                if depth >= lim.max_key_depth:
                    self._fail(f"dict key nested deeper than {lim.max_key_depth} (Limits.max_key_depth)")
                size, height = 1, 0
                for k in key:
                    s, h = self._key_size(k, depth + 1)
                    size += s
                    height = max(height, h + 1)
                    if size > lim.max_key_items:
                        self._fail(f"dict key of more than {lim.max_key_items} items counting "
                                   f"repetitions (Limits.max_key_items)")
                self._key_cost[id(key)] = (key, size, height)
            if depth + height > lim.max_key_depth:
                self._fail(f"dict key nested deeper than {lim.max_key_depth} (Limits.max_key_depth)")
            return size, height
        self._fail(f"unhashable dict key of type {type(key).__name__}")

    # -- main loop -------------------------------------------------------------------------------
    def run(self):
        try:
            return self._run()
        except CheckpointError:
            raise
        except (IndexError, KeyError, TypeError, ValueError, OverflowError, struct.error,
                UnicodeDecodeError, RecursionError, MemoryError) as e:
            raise CheckpointError(
                f"pickle: malformed data ({type(e).__name__}: {e}) "
                f"(opcode {self.op_name} at byte {self.op_pos})") from None

    def _run(self):
        data = self.data
        lim = self.limits
        ops = 0
        push = self._push
        if self.pos < self.end and data[self.pos] != 0x80:
            self.op_pos, self.op_name = self.pos, _OPNAMES.get(data[self.pos], "?")
            self._fail("pickle does not start with PROTO (protocols 0/1 are not supported)")
        while True:
            if self.pos >= self.end:
                self.op_name = "?"
                self.op_pos = self.pos
                self._fail("truncated: missing STOP")
            ops += 1
            if ops > lim.max_ops:
                self._fail(f"more than {lim.max_ops} opcodes (Limits.max_ops)")
            self.op_pos = self.pos
            op = data[self.pos]
            self.pos += 1
            name = _OPNAMES.get(op)
            if name is None:
                self.op_name = _REFUSED_OPNAMES.get(op, f"0x{op:02x}")
                self._fail("unsupported opcode")
            self.op_name = name
            # Most frequent opcodes in torch pickles first.
            if op == 0x71:  # BINPUT
                self._memo_put(self._read(1)[0])
            elif op == 0x68:  # BINGET
                self._memo_get(self._read(1)[0])
            elif op == 0x74:  # TUPLE
                push(tuple(self._pop_mark()))
            elif op == 0x4B:  # BININT1
                push(self._read(1)[0])
            elif op == 0x28:  # MARK
                if len(self.metastack) >= lim.max_marks:
                    self._fail(f"MARK nested deeper than {lim.max_marks} (Limits.max_marks)")
                self.metastack.append(self.stack)
                self.saved_items += len(self.stack)
                self.stack = []
            elif op == 0x58:  # BINUNICODE
                n = self._read_str_len(_unpack_u4(self._read(4))[0])
                push(str(self._read(n), "utf-8", "surrogatepass"))
            elif op == 0x52:  # REDUCE
                args = self._pop()
                func = self._pop()
                push(self._reduce(func, args))
            elif op == 0x72:  # LONG_BINPUT
                self._memo_put(_unpack_u4(self._read(4))[0])
            elif op == 0x94:  # MEMOIZE
                self._memo_put(len(self.memo))
            elif op == 0x6A:  # LONG_BINGET
                self._memo_get(_unpack_u4(self._read(4))[0])
            elif op == 0x80:  # PROTO
                proto = self._read(1)[0]
                if not 2 <= proto <= 4:
                    self._fail(f"pickle protocol {proto} is not supported (only 2-4)")
                if self.proto is not None or self.op_pos != self._start:
                    self._fail("PROTO must be the first opcode")
                self.proto = proto
            elif op == 0x95:  # FRAME: an 8-byte length; frames only matter to streaming readers
                n = _unpack_u8(self._read(8))[0]
                if n > self.end - self.pos:
                    self._fail(f"truncated: frame claims {n} bytes, {self.end - self.pos} left")
            elif op == 0x2E:  # STOP
                obj = self._pop()
                if self.stack or self.metastack:
                    self._fail("data left on the stack at STOP")
                return obj, self.pos
            elif op == 0x30:  # POP (of the top item, or of an empty MARK)
                if self.stack:
                    self.stack.pop()
                else:
                    self._pop_mark()
            elif op == 0x31:  # POP_MARK
                self._pop_mark()
            elif op == 0x4E:  # NONE
                push(None)
            elif op == 0x88:
                push(True)
            elif op == 0x89:
                push(False)
            elif op == 0x4A:  # BININT
                push(_unpack_i4(self._read(4))[0])
            elif op == 0x4D:  # BININT2
                push(_unpack_u2(self._read(2))[0])
            elif op == 0x8A:  # LONG1
                n = self._read(1)[0]
                if n > lim.max_int_bytes:
                    self._fail(f"integer of {n} bytes exceeds the cap of {lim.max_int_bytes} "
                               f"(Limits.max_int_bytes)")
                push(int.from_bytes(self._read(n), "little", signed=True))
            elif op == 0x8B:  # LONG4
                n = _unpack_i4(self._read(4))[0]
                if n < 0:
                    self._fail("LONG4 with negative byte count")
                if n > lim.max_int_bytes:
                    self._fail(f"integer of {n} bytes exceeds the cap of {lim.max_int_bytes} "
                               f"(Limits.max_int_bytes)")
                push(int.from_bytes(self._read(n), "little", signed=True))
            elif op == 0x47:  # BINFLOAT
                push(_unpack_f8(self._read(8))[0])
            elif op == 0x8C:  # SHORT_BINUNICODE
                n = self._read(1)[0]
                push(str(self._read(n), "utf-8", "surrogatepass"))
            elif op == 0x42:  # BINBYTES
                n = self._read_str_len(_unpack_u4(self._read(4))[0])
                push(bytes(self._read(n)))
            elif op == 0x43:  # SHORT_BINBYTES
                n = self._read(1)[0]
                push(bytes(self._read(n)))
            elif op == 0x29:  # EMPTY_TUPLE
                push(())
            elif op == 0x85:
                push((self._pop(),))
            elif op == 0x86:
                b = self._pop()
                a = self._pop()
                push((a, b))
            elif op == 0x87:
                c = self._pop()
                b = self._pop()
                a = self._pop()
                push((a, b, c))
            elif op == 0x5D:  # EMPTY_LIST
                push([])
            elif op == 0x6C:  # LIST
                push(self._pop_mark())
            elif op == 0x61:  # APPEND
                v = self._pop()
                lst = self._top()
                if not isinstance(lst, list):
                    self._fail(f"APPEND onto {type(lst).__name__}, not a list")
                lst.append(v)
            elif op == 0x65:  # APPENDS
                items = self._pop_mark()
                lst = self._top()
                if not isinstance(lst, list):
                    self._fail(f"APPENDS onto {type(lst).__name__}, not a list")
                lst.extend(items)
            elif op == 0x7D:  # EMPTY_DICT
                push({})
            elif op == 0x64:  # DICT
                items = self._pop_mark()
                push(self._dict_from(items, {}))
            elif op == 0x73:  # SETITEM
                v = self._pop()
                k = self._pop()
                d = self._top()
                if not isinstance(d, dict):
                    self._fail(f"SETITEM onto {type(d).__name__}, not a dict")
                self._check_key(k)
                d[k] = v
            elif op == 0x75:  # SETITEMS
                items = self._pop_mark()
                d = self._top()
                if not isinstance(d, dict):
                    self._fail(f"SETITEMS onto {type(d).__name__}, not a dict")
                self._dict_from(items, d)
            elif op == 0x8F:  # EMPTY_SET
                push(set())
            elif op == 0x90:  # ADDITEMS
                items = self._pop_mark()
                s = self._top()
                if not isinstance(s, set):
                    self._fail(f"ADDITEMS onto {type(s).__name__}, not a set")
                for it in items:
                    self._check_key(it)
                s.update(items)
            elif op == 0x91:  # FROZENSET
                items = self._pop_mark()
                for it in items:
                    self._check_key(it)
                push(frozenset(items))
            elif op == 0x63:  # GLOBAL: "module\nname\n"
                module = self._readline()
                qual = self._readline()
                push(self._make_global(module, qual))
            elif op == 0x93:  # STACK_GLOBAL
                qual = self._pop()
                module = self._pop()
                if not isinstance(module, str) or not isinstance(qual, str):
                    self._fail("STACK_GLOBAL needs two strings")
                push(self._make_global(module, qual))
            elif op == 0x81:  # NEWOBJ
                args = self._pop()
                cls = self._pop()
                push(self._newobj(cls, args, None))
            elif op == 0x92:  # NEWOBJ_EX
                kwargs = self._pop()
                args = self._pop()
                cls = self._pop()
                if not isinstance(kwargs, dict):
                    self._fail("NEWOBJ_EX kwargs is not a dict")
                push(self._newobj(cls, args, kwargs))
            elif op == 0x62:  # BUILD
                state = self._pop()
                self._build(self._top(), state)
            elif op == 0x51:  # BINPERSID
                pid = self._pop()
                if self.persistent_load is None:
                    self._fail("persistent id in a pickle that must not have one")
                push(self.persistent_load(pid))
            else:  # pragma: no cover - table and dispatch out of sync
                self._fail("opcode in table but not dispatched")

    def _readline(self) -> str:
        end = min(self.end, self.pos + 256)
        chunk = bytes(self.data[self.pos:end])
        i = chunk.find(b"\n")
        if i < 0:
            self._fail("GLOBAL name not terminated by a newline within 256 bytes")
        self.pos += i + 1
        try:
            return chunk[:i].decode("ascii")
        except UnicodeDecodeError:
            self._fail("GLOBAL name is not ASCII")

    def _make_global(self, module: str, qual: str) -> Global:
        if not module or not qual or len(module) > 256 or len(qual) > 256:
            self._fail("GLOBAL with an empty or over-long name")
        return Global(module, qual)

    def _dict_from(self, items: list, d: dict) -> dict:
        if len(items) % 2:
            self._fail("odd number of items for a dict")
        for i in range(0, len(items), 2):
            k = items[i]
            self._check_key(k)
            d[k] = items[i + 1]
        return d

    # -- calls: never executed -------------------------------------------------------------------
    def _refuse_if_dangerous(self, func, what: str) -> None:
        if isinstance(func, Global) and _danger(func):
            self._fail(f"{what} of dangerous global {func.qualname!r}; refusing the whole file "
                       f"(nothing was imported or called)", UnsafeCheckpointError)

    def _reduce(self, func, args):
        if not isinstance(func, (Global, Call)):
            self._fail(f"REDUCE on a non-callable {type(func).__name__}")
        self._refuse_if_dangerous(func, "REDUCE")
        if not isinstance(args, tuple):
            self._fail(f"REDUCE arguments are a {type(args).__name__}, not a tuple")
        if isinstance(func, Global):
            matched = self._match_rebuild(func, args)
            if matched is not None:
                return matched
        return Call(func, args, "reduce")

    def _newobj(self, cls, args, kwargs):
        if not isinstance(cls, (Global, Call)):
            self._fail(f"NEWOBJ on a non-class {type(cls).__name__}")
        self._refuse_if_dangerous(cls, "NEWOBJ")
        if not isinstance(args, tuple):
            self._fail(f"NEWOBJ arguments are a {type(args).__name__}, not a tuple")
        return Call(cls, args, "newobj", kwargs)

    def _build(self, obj, state) -> None:
        if isinstance(obj, Call):
            self._refuse_if_dangerous(obj.func, "BUILD")
            obj.state = state
        elif isinstance(obj, dict):
            # OrderedDict from state_dict() gets {'_metadata': ...} (an attribute, not an item).
            # Attributes of a dict carry no weights; they are dropped.
            pass
        elif isinstance(obj, (TensorRef, UnsupportedTensor)):
            # torch tensors may be BUILT with Python attributes (rare); the data is unaffected.
            pass
        else:
            self._fail(f"BUILD on {type(obj).__name__}")

    def _match_rebuild(self, g: Global, args: tuple):
        """Pattern-match the few torch rebuild callables; None means 'leave inert'."""
        mod, name = g.module, g.name
        if mod == "collections" and name == "OrderedDict":
            if args == ():
                return {}
            return None
        if mod == "torch._utils":
            if name == "_rebuild_tensor_v2":
                if len(args) not in (6, 7):
                    self._fail(f"_rebuild_tensor_v2 takes 6 or 7 arguments, got {len(args)}")
                if len(args) == 7 and args[6]:
                    return UnsupportedTensor(f"tensor with metadata {brief(args[6], 80)} "
                                             f"(conj/neg bits)")
                return self._tensor(args[0], args[1], args[2], args[3], None)
            if name == "_rebuild_tensor":
                if len(args) != 4:
                    self._fail(f"_rebuild_tensor takes 4 arguments, got {len(args)}")
                return self._tensor(args[0], args[1], args[2], args[3], None)
            if name == "_rebuild_tensor_v3":
                if len(args) not in (7, 8):
                    self._fail(f"_rebuild_tensor_v3 takes 7 or 8 arguments, got {len(args)}")
                dt = args[6]
                if not isinstance(dt, Global) or dt.module != "torch":
                    self._fail("_rebuild_tensor_v3 dtype is not a torch dtype global")
                info = _TORCH_DTYPES.get(dt.name)
                if info is None:
                    return UnsupportedTensor(f"dtype torch.{dt.name}")
                if len(args) == 8 and args[7]:
                    return UnsupportedTensor("tensor with metadata (conj/neg bits)")
                return self._tensor(args[0], args[1], args[2], args[3], info)
            if name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
                if args and isinstance(args[0], (TensorRef, UnsupportedTensor)):
                    return args[0]
                return None
            if name.startswith("_rebuild_"):
                return UnsupportedTensor(f"tensor kind {mod}.{name}")
            return None
        if mod == "torch._tensor" and name == "_rebuild_from_type_v2":
            # (func, type, args, state): unwrap a Tensor subclass / Parameter to its inner rebuild.
            if len(args) == 4 and isinstance(args[0], Global) and isinstance(args[2], tuple):
                self._refuse_if_dangerous(args[0], "_rebuild_from_type_v2")
                inner = self._match_rebuild(args[0], args[2])
                if isinstance(inner, (TensorRef, UnsupportedTensor)):
                    return inner
            return None
        return None

    def _tensor(self, storage, offset, size, stride, dtype_info):
        if not isinstance(storage, StorageRef):
            self._fail(f"tensor storage is a {type(storage).__name__}, not a storage persistent id")
        if storage.code is None:
            return UnsupportedTensor(f"storage type {storage.type_name}")
        if not _is_int(offset) or offset < 0:
            self._fail(f"tensor storage offset {brief(offset)} is not a non-negative int")
        if not isinstance(size, tuple) or not isinstance(stride, tuple):
            self._fail(f"tensor size {brief(size)} / stride {brief(stride)} are not tuples")
        if len(size) != len(stride):
            self._fail(f"tensor size {brief(size)} and stride {brief(stride)} differ in length")
        if len(size) > _MAX_NDIM:
            self._fail(f"tensor with {len(size)} dimensions (cap {_MAX_NDIM})")
        for v in size:
            if not _is_int(v) or v < 0:
                self._fail(f"tensor size {brief(size)} has a negative or non-int entry")
            if v > _MAX_DIM:
                self._fail(f"tensor size {brief(size)} has a dimension of {v} >= 2**31 (the C core's "
                           f"int range)")
        for v in stride:
            if not _is_int(v) or v < 0:
                self._fail(f"tensor stride {brief(stride)} has a negative or non-int entry")
        if dtype_info is not None and storage.root is not None:
            self._fail("_rebuild_tensor_v3 on a legacy view storage")
        if dtype_info is None:
            code, itemsize = storage.code, storage.itemsize
            storage_numel = storage.numel
        else:
            code, itemsize = dtype_info
            if storage.type_name != "UntypedStorage":
                if (storage.code, storage.itemsize) != (code, itemsize):
                    self._fail(f"_rebuild_tensor_v3 dtype {code} on a typed {storage.type_name}")
                storage_numel = storage.numel
            else:
                if storage.nbytes % itemsize:
                    self._fail(f"untyped storage of {storage.nbytes} bytes is not a whole number of "
                               f"{itemsize}-byte elements")
                storage_numel = storage.nbytes // itemsize
        numel = 1
        for v in size:
            numel *= v
        if numel > _INT64_MAX or numel * itemsize > _INT64_MAX:
            self._fail(f"tensor size {size!r} overflows int64")
        if numel:
            last = offset
            for sz, st in zip(size, stride):
                last += (sz - 1) * st
            if last > _INT64_MAX or last * itemsize > _INT64_MAX:
                self._fail(f"tensor view (offset {offset}, size {size!r}, stride {stride!r}) "
                           f"overflows int64")
            if last >= storage_numel:
                self._fail(f"tensor view (offset {offset}, size {size!r}, stride {stride!r}) reaches "
                           f"element {last} of storage {storage.key!r} with {storage_numel} elements")
        elif offset > storage_numel:
            self._fail(f"empty tensor offset {offset} beyond storage {storage.key!r} "
                       f"with {storage_numel} elements")
        if dtype_info is not None and storage.type_name == "UntypedStorage":
            storage = _retyped(storage, code, itemsize)
        return TensorRef(storage, offset, size, stride, code, itemsize, self.budget)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _retyped(storage: StorageRef, code: str, itemsize: int) -> StorageRef:
    """A typed alias of an untyped (byte) storage, for ``_rebuild_tensor_v3``.

    It shares the container reader's loader, which builds arrays from ``(key, code, numel)``.
    """
    ref = StorageRef(storage.key, storage.type_name, code, itemsize, storage.nbytes // itemsize,
                     storage.location)
    # The container reader attaches loaders after the pickle is parsed and validated: look it up late.
    def load(r, _s=storage):
        if _s._loader is None:
            raise CheckpointError(f"storage {_s.key!r} has no data source")
        return _s._loader(r)
    ref._loader = load
    return ref


# ----------------------------------------------------------------------------------------------------
# Persistent ids
# ----------------------------------------------------------------------------------------------------

def parse_storage_pid(pid, legacy: bool) -> tuple[str, str, tuple[Optional[str], int], str, int, Any]:
    """Validate a ``('storage', cls, key, location, numel[, view_metadata])`` persistent id.

    Returns ``(key, type_name, (code | None, itemsize), location, numel, view_metadata)``.
    """
    n = 6 if legacy else 5
    if not isinstance(pid, tuple) or len(pid) != n or pid[0] != "storage":
        kind = brief(pid[0], 60) if isinstance(pid, tuple) and pid else type(pid).__name__
        raise CheckpointError(f"persistent id {kind} is not a {n}-tuple ('storage', class, key, "
                              f"location, numel{', view' if legacy else ''})")
    cls, key, location, numel = pid[1], pid[2], pid[3], pid[4]
    if not isinstance(cls, Global) or cls.module not in _STORAGE_MODULES or cls.name not in STORAGE_TYPES:
        shown = cls.qualname if isinstance(cls, Global) else type(cls).__name__
        raise CheckpointError(f"persistent id names unknown storage class {shown!r}")
    if not isinstance(key, str) or not key or len(key) > 256:
        raise CheckpointError(f"storage key {brief(key, 60)} is not a short non-empty string")
    if not isinstance(location, str):
        raise CheckpointError(f"storage {key!r} location {brief(location, 60)} is not a string")
    if not _is_int(numel) or numel < 0 or numel > Limits.max_storage_numel:
        raise CheckpointError(f"storage {key!r} numel {brief(numel, 60)} is not a non-negative int64")
    info = STORAGE_TYPES[cls.name]
    if numel * info[1] > _INT64_MAX:
        raise CheckpointError(f"storage {key!r}: numel {numel} x {info[1]} bytes overflows int64")
    return key, cls.name, info, location, numel, (pid[5] if legacy else None)


def unpickle(data, start: int = 0, end: Optional[int] = None, persistent_load=None,
             limits: type[Limits] = Limits, budget: Optional[_CopyBudget] = None):
    """Interpret one pickle; returns ``(obj, end_offset)``."""
    return PickleVM(data, start, end, persistent_load, limits, budget).run()


# ----------------------------------------------------------------------------------------------------
# Tree walking (cycle- and depth-safe)
# ----------------------------------------------------------------------------------------------------

def materialize_tree(obj, limits: type[Limits] = Limits):
    """Replace every :class:`TensorRef` in ``obj`` by a NumPy array.

    Lists and dicts are updated in place (so shared and cyclic structures keep their identity),
    tuples are rebuilt when an item changed, :class:`Call` nodes get their ``args``/``state`` updated.
    Depth is capped by ``limits.max_tree_depth``.
    """
    done: dict[int, Any] = {}

    # Paths are built only for messages: a linked (parent, step) pair per level, so that walking a
    # wide or deep tree (or one with a 16 MB key) never copies path strings per node.
    def fmt(path) -> str:
        steps = []
        while path is not None and len(steps) < 12:
            path, step = path
            steps.append(step)
        more = "..." if path is not None else ""
        out = ""
        for st in reversed(steps):
            out += f"[{st}]" if isinstance(st, int) else (f".{brief(st, 40)}" if out else brief(st, 40))
        return more + out

    def walk(o, depth, path):
        if isinstance(o, TensorRef):
            oid = id(o)
            if oid not in done:
                done[oid] = o.materialize(fmt(path))
            return done[oid]
        if not isinstance(o, (list, dict, tuple, Call, set, frozenset)):
            return o
        oid = id(o)
        if oid in done:
            return done[oid]
        if depth > limits.max_tree_depth:
            raise CheckpointError(f"object nesting deeper than {limits.max_tree_depth} at "
                                  f"{fmt(path)!r} (Limits.max_tree_depth)")
        if isinstance(o, list):
            done[oid] = o
            for i, v in enumerate(o):
                o[i] = walk(v, depth + 1, (path, i))
            return o
        if isinstance(o, dict):
            done[oid] = o
            for k in list(o):
                o[k] = walk(o[k], depth + 1, (path, k if isinstance(k, str) else brief(k, 40)))
            return o
        if isinstance(o, Call):
            done[oid] = o
            o.args = walk(o.args, depth + 1, path)
            if o.kwargs is not None:
                o.kwargs = walk(o.kwargs, depth + 1, path)
            o.state = walk(o.state, depth + 1, path)
            return o
        if isinstance(o, (set, frozenset)):
            done[oid] = o  # set items are keys: never tensors
            return o
        done[oid] = o  # provisional, for cycles through mutable containers
        items = [walk(v, depth + 1, (path, i)) for i, v in enumerate(o)]
        new = o if all(a is b for a, b in zip(items, o)) else tuple(items)
        done[oid] = new
        return new

    return walk(obj, 0, None)
