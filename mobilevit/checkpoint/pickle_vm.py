"""A restricted, interpreting unpickler for PyTorch checkpoints: the generic machine.

Nothing in a pickle is ever imported or called.  This module is a small stack machine over the pickle
opcode bytes (protocols 2-4, the subset ``torch.save`` and ``pickle`` produce for state dicts and
training checkpoints) that builds an inert object tree:

* plain data (None, bool, int, float, str, bytes, tuple, list, dict, set) is built as Python data;
* ``GLOBAL`` / ``STACK_GLOBAL`` push an inert :class:`~.inert.Global` marker (a module name and a
  qualified name; no import happens);
* ``REDUCE`` / ``NEWOBJ`` on a marker produce an inert :class:`~.inert.Call` node, except where the
  *rules* recognise the callable: :class:`~.torch_objects.TorchRules` (the default) pattern-matches
  torch's rebuild functions (never calls them) into ``TensorRef`` / ``UnsupportedTensor`` and turns
  ``collections.OrderedDict()`` into a ``dict``;
* ``REDUCE`` / ``NEWOBJ`` / ``BUILD`` whose callable is a known-dangerous global (``os.system``,
  ``builtins.eval``, ``subprocess.Popen`` ...) raises :class:`UnsafeCheckpointError` naming it --
  even though it would never be called, such a file is hostile and is refused as a whole (the
  deny-list below is the VM's, whatever the rules);
* ``BINPERSID`` hands the persistent id to a callback supplied by the container reader
  (:mod:`.torch_zip`), which turns ``('storage', ...)`` ids into ``StorageRef``.

Dispatch is table-driven: :data:`_OPCODES` maps each supported opcode byte to its name, a handler
method (one per opcode family) and the handler's argument.  Every structural problem (truncation,
stack underflow, bad memo index, unknown opcode, caps exceeded) raises :class:`CheckpointError` with
the opcode name and byte offset.  Memory is bounded by the caps in :class:`~.limits.Limits`, never by
sizes claimed inside the file.

The torch object model lives in :mod:`.torch_objects`; its names (``StorageRef``, ``TensorRef``,
``parse_storage_pid``, ``materialize_tree`` ...) are re-exported here for existing callers.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Optional

from .errors import CheckpointError, UnsafeCheckpointError
from .inert import Call, Global, Inert, brief
from .limits import Limits
from .torch_objects import (  # noqa: F401 (re-exported)
    STORAGE_TYPES, StorageRef, TensorRef, TorchRules, UnsupportedTensor, _CopyBudget, materialize_tree,
    parse_storage_pid,
)

__all__ = [
    "Global", "Call", "StorageRef", "TensorRef", "UnsupportedTensor", "Limits", "PickleVM",
    "unpickle", "parse_storage_pid", "STORAGE_TYPES", "materialize_tree", "brief", "TorchRules",
]


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
    ids are refused.  ``rules`` decides what ``REDUCE`` of a recognised global builds and which objects
    ``BUILD`` may leave unchanged (default: :class:`~.torch_objects.TorchRules` with ``budget``).
    ``run()`` returns ``(obj, end)`` where ``end`` is the offset just past STOP.

    Each opcode byte maps, in :data:`_DISPATCH`, to ``(name, handler, argument)``; the main loop
    checks the caps shared by all opcodes, then calls ``handler(vm, argument)``.  A handler returns
    None, except STOP, which returns ``(obj, end)``.  Opcodes of one family share a handler and differ
    by the argument (e.g. TUPLE1/2/3 by the item count).
    """

    def __init__(self, data, start: int = 0, end: Optional[int] = None,
                 persistent_load: Optional[Callable[[Any], Any]] = None,
                 limits: type[Limits] = Limits, budget: Optional[_CopyBudget] = None, *,
                 rules=None):
        if rules is None:
            rules = TorchRules(budget, limits)
        elif budget is not None:
            raise TypeError("pass budget to the rules, not to PickleVM")
        self.data = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
        self.pos = start
        self._start = start
        self.end = len(data) if end is None else min(end, len(data))
        self.persistent_load = persistent_load
        self.limits = limits
        self.rules = rules
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
        end = self.end
        max_ops = self.limits.max_ops
        table = _DISPATCH
        ops = 0
        if self.pos < end and data[self.pos] != 0x80:
            self.op_pos, self.op_name = self.pos, _OPNAMES.get(data[self.pos], "?")
            self.fail("pickle does not start with PROTO (protocols 0/1 are not supported)")
        while True:
            pos = self.pos
            if pos >= end:
                self.op_name = "?"
                self.op_pos = pos
                self.fail("truncated: missing STOP")
            ops += 1
            if ops > max_ops:
                self.fail(f"more than {max_ops} opcodes (Limits.max_ops)")
            self.op_pos = pos
            op = data[pos]
            self.pos = pos + 1
            entry = table[op]
            if entry is None:
                self.op_name = _REFUSED_OPNAMES.get(op, f"0x{op:02x}")
                self.fail("unsupported opcode")
            self.op_name, handler, arg = entry
            result = handler(self, arg)
            if result is not None:  # STOP
                return result

    # -- opcode handlers, by family (``arg`` is the table's argument) -----------------------------
    # Framing.
    def _op_proto(self, arg) -> None:
        proto = self._read(1)[0]
        if not 2 <= proto <= 4:
            self.fail(f"pickle protocol {proto} is not supported (only 2-4)")
        if self.proto is not None or self.op_pos != self._start:
            self.fail("PROTO must be the first opcode")
        self.proto = proto

    def _op_frame(self, arg) -> None:
        # An 8-byte length; frames only matter to streaming readers.
        n = _unpack_u8(self._read(8))[0]
        if n > self.end - self.pos:
            self.fail(f"truncated: frame claims {n} bytes, {self.end - self.pos} left")

    def _op_stop(self, arg) -> tuple:
        obj = self._pop()
        if self.stack or self.metastack:
            self.fail("data left on the stack at STOP")
        return obj, self.pos

    # Stack and marks.
    def _op_mark(self, arg) -> None:
        if len(self.metastack) >= self.limits.max_marks:
            self.fail(f"MARK nested deeper than {self.limits.max_marks} (Limits.max_marks)")
        self.metastack.append(self.stack)
        self.saved_items += len(self.stack)
        self.stack = []

    def _op_pop(self, arg) -> None:
        # POP of the top item, or of an empty MARK.
        if self.stack:
            self.stack.pop()
        else:
            self._pop_mark()

    def _op_pop_mark(self, arg) -> None:
        self._pop_mark()

    # Constants: ``arg`` is the value (immutable) or, for the EMPTY_* containers, its type.
    def _op_constant(self, arg) -> None:
        self._push(arg)

    def _op_empty(self, arg) -> None:
        self._push(arg())

    # Numbers.
    def _op_uint8(self, arg) -> None:
        self._push(self._read(1)[0])

    def _op_fixed(self, arg) -> None:
        # BININT, BININT2, BINFLOAT: ``arg`` is (unpack, byte count).
        unpack, n = arg
        self._push(unpack(self._read(n))[0])

    def _op_long(self, arg) -> None:
        # LONG1 (arg 1: a one-byte length) and LONG4 (arg 4: a signed four-byte length).
        if arg == 1:
            n = self._read(1)[0]
        else:
            n = _unpack_i4(self._read(4))[0]
            if n < 0:
                self.fail("LONG4 with negative byte count")
        lim = self.limits
        if n > lim.max_int_bytes:
            self.fail(f"integer of {n} bytes exceeds the cap of {lim.max_int_bytes} "
                      f"(Limits.max_int_bytes)")
        self._push(int.from_bytes(self._read(n), "little", signed=True))

    # Strings: ``arg`` is the width of the length (4: checked against Limits.max_str_bytes).
    def _op_text(self, arg) -> None:
        n = self._read_str_len(_unpack_u4(self._read(4))[0]) if arg == 4 else self._read(1)[0]
        self._push(str(self._read(n), "utf-8", "surrogatepass"))

    def _op_bytes(self, arg) -> None:
        n = self._read_str_len(_unpack_u4(self._read(4))[0]) if arg == 4 else self._read(1)[0]
        self._push(bytes(self._read(n)))

    # Tuples.
    def _op_tuple(self, arg) -> None:
        self._push(tuple(self._pop_mark()))

    def _op_tuple_n(self, arg) -> None:
        # TUPLE1, TUPLE2, TUPLE3: ``arg`` items off the stack.
        stack = self.stack
        if len(stack) < arg:
            self.fail("stack underflow")
        items = tuple(stack[-arg:])
        del stack[-arg:]
        self._push(items)

    # Lists.
    def _op_list(self, arg) -> None:
        self._push(self._pop_mark())

    def _op_append(self, arg) -> None:
        v = self._pop()
        lst = self._top()
        if not isinstance(lst, list):
            self.fail(f"APPEND onto {type(lst).__name__}, not a list")
        lst.append(v)

    def _op_appends(self, arg) -> None:
        items = self._pop_mark()
        lst = self._top()
        if not isinstance(lst, list):
            self.fail(f"APPENDS onto {type(lst).__name__}, not a list")
        lst.extend(items)

    # Dicts.
    def _op_dict(self, arg) -> None:
        items = self._pop_mark()
        self._push(self._dict_from(items, {}))

    def _op_setitem(self, arg) -> None:
        v = self._pop()
        k = self._pop()
        d = self._top()
        if not isinstance(d, dict):
            self.fail(f"SETITEM onto {type(d).__name__}, not a dict")
        self._check_key(k)
        d[k] = v

    def _op_setitems(self, arg) -> None:
        items = self._pop_mark()
        d = self._top()
        if not isinstance(d, dict):
            self.fail(f"SETITEMS onto {type(d).__name__}, not a dict")
        self._dict_from(items, d)

    # Sets.
    def _op_additems(self, arg) -> None:
        items = self._pop_mark()
        s = self._top()
        if not isinstance(s, set):
            self.fail(f"ADDITEMS onto {type(s).__name__}, not a set")
        for it in items:
            self._check_key(it)
        s.update(items)

    def _op_frozenset(self, arg) -> None:
        items = self._pop_mark()
        for it in items:
            self._check_key(it)
        self._push(frozenset(items))

    # Memo: ``arg`` is the width of the index (1 or 4 bytes; 0: MEMOIZE, the next free index).
    def _op_memo_put(self, arg) -> None:
        if arg == 1:
            self._memo_put(self._read(1)[0])
        elif arg == 4:
            self._memo_put(_unpack_u4(self._read(4))[0])
        else:
            self._memo_put(len(self.memo))

    def _op_memo_get(self, arg) -> None:
        if arg == 1:
            self._memo_get(self._read(1)[0])
        else:
            self._memo_get(_unpack_u4(self._read(4))[0])

    # Globals: inert references, never imported.
    def _op_global(self, arg) -> None:
        # "module\nname\n"
        module = self._readline()
        qual = self._readline()
        self._push(self._make_global(module, qual))

    def _op_stack_global(self, arg) -> None:
        qual = self._pop()
        module = self._pop()
        if not isinstance(module, str) or not isinstance(qual, str):
            self.fail("STACK_GLOBAL needs two strings")
        self._push(self._make_global(module, qual))

    # Calls: recorded or pattern matched by the rules, never executed.
    def _op_reduce(self, arg) -> None:
        args = self._pop()
        func = self._pop()
        self._push(self._reduce(func, args))

    def _op_newobj(self, arg) -> None:
        args = self._pop()
        cls = self._pop()
        self._push(self._newobj(cls, args, None))

    def _op_newobj_ex(self, arg) -> None:
        kwargs = self._pop()
        args = self._pop()
        cls = self._pop()
        if not isinstance(kwargs, dict):
            self.fail("NEWOBJ_EX kwargs is not a dict")
        self._push(self._newobj(cls, args, kwargs))

    def _op_build(self, arg) -> None:
        state = self._pop()
        self._build(self._top(), state)

    # Persistent ids: the container reader's hook.
    def _op_binpersid(self, arg) -> None:
        pid = self._pop()
        if self.persistent_load is None:
            self.fail("persistent id in a pickle that must not have one")
        self._push(self.persistent_load(pid))

    # -- helpers ---------------------------------------------------------------------------------
    # -- errors ----------------------------------------------------------------------------------
    def fail(self, msg: str, exc: type = CheckpointError):
        raise exc(f"pickle: {msg} (opcode {self.op_name} at byte {self.op_pos})")

    # -- reading ---------------------------------------------------------------------------------
    def _read(self, n: int):
        p = self.pos
        if n < 0 or p + n > self.end:
            self.fail(f"truncated: needs {n} bytes, {self.end - p} left")
        self.pos = p + n
        return self.data[p:p + n]

    def _read_str_len(self, n: int) -> int:
        if n > self.limits.max_str_bytes:
            self.fail(f"string of {n} bytes exceeds the cap of {self.limits.max_str_bytes} "
                       f"(Limits.max_str_bytes)")
        if self.pos + n > self.end:
            self.fail(f"truncated: string claims {n} bytes, {self.end - self.pos} left")
        return n

    # -- stack -----------------------------------------------------------------------------------
    def _push(self, obj) -> None:
        if len(self.stack) + self.saved_items >= self.limits.max_stack:
            self.fail(f"more than {self.limits.max_stack} items on the stack (Limits.max_stack)")
        self.stack.append(obj)

    # MARK saves the current stack on ``metastack`` and starts a new one, so a mark is never an item
    # and "stack underflow" also covers popping across a MARK.
    def _pop(self):
        if not self.stack:
            self.fail("stack underflow")
        return self.stack.pop()

    def _top(self):
        if not self.stack:
            self.fail("stack underflow")
        return self.stack[-1]

    def _pop_mark(self) -> list:
        if not self.metastack:
            self.fail("no MARK to pop to")
        items = self.stack
        self.stack = self.metastack.pop()
        self.saved_items -= len(self.stack)
        return items

    def _memo_put(self, idx: int) -> None:
        if idx not in self.memo and len(self.memo) >= self.limits.max_memo:
            self.fail(f"more than {self.limits.max_memo} memo entries (Limits.max_memo)")
        self.memo[idx] = self._top()

    def _memo_get(self, idx: int) -> None:
        try:
            obj = self.memo[idx]
        except KeyError:
            self.fail(f"memo index {idx} was never stored")
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
                self.fail(f"more than {self.limits.max_composite_keys} tuple/frozenset dict keys or set "
                           f"items (Limits.max_composite_keys)")
        self._key_size(key)

    def _key_size(self, key, depth: int = 0) -> tuple:
        """``(expanded items, height)`` of a key; refuses unhashable, too deep or too large keys."""
        if isinstance(key, (str, bytes, float, bool)) or key is None:
            return 1, 0
        if isinstance(key, int):
            if -(1 << 63) <= key < (1 << 63):
                return 1, 0
            self.fail("integer dict key outside int64")
        if isinstance(key, Inert):
            return 1, 0  # identity-hashed
        if isinstance(key, (tuple, frozenset)):
            lim = self.limits
            hit = self._key_cost.get(id(key))
            if hit is not None and hit[0] is key:
                size, height = hit[1], hit[2]
            else:
                if depth >= lim.max_key_depth:
                    self.fail(f"dict key nested deeper than {lim.max_key_depth} (Limits.max_key_depth)")
                size, height = 1, 0
                for k in key:
                    s, h = self._key_size(k, depth + 1)
                    size += s
                    height = max(height, h + 1)
                    if size > lim.max_key_items:
                        self.fail(f"dict key of more than {lim.max_key_items} items counting "
                                   f"repetitions (Limits.max_key_items)")
                self._key_cost[id(key)] = (key, size, height)
            if depth + height > lim.max_key_depth:
                self.fail(f"dict key nested deeper than {lim.max_key_depth} (Limits.max_key_depth)")
            return size, height
        self.fail(f"unhashable dict key of type {type(key).__name__}")

    def _readline(self) -> str:
        end = min(self.end, self.pos + 256)
        chunk = bytes(self.data[self.pos:end])
        i = chunk.find(b"\n")
        if i < 0:
            self.fail("GLOBAL name not terminated by a newline within 256 bytes")
        self.pos += i + 1
        try:
            return chunk[:i].decode("ascii")
        except UnicodeDecodeError:
            self.fail("GLOBAL name is not ASCII")

    def _make_global(self, module: str, qual: str) -> Global:
        if not module or not qual or len(module) > 256 or len(qual) > 256:
            self.fail("GLOBAL with an empty or over-long name")
        return Global(module, qual)

    def _dict_from(self, items: list, d: dict) -> dict:
        if len(items) % 2:
            self.fail("odd number of items for a dict")
        for i in range(0, len(items), 2):
            k = items[i]
            self._check_key(k)
            d[k] = items[i + 1]
        return d

    # -- calls: never executed -------------------------------------------------------------------
    def refuse_if_dangerous(self, func, what: str) -> None:
        if isinstance(func, Global) and _danger(func):
            self.fail(f"{what} of dangerous global {func.qualname!r}; refusing the whole file "
                       f"(nothing was imported or called)", UnsafeCheckpointError)

    def _reduce(self, func, args):
        if not isinstance(func, (Global, Call)):
            self.fail(f"REDUCE on a non-callable {type(func).__name__}")
        self.refuse_if_dangerous(func, "REDUCE")
        if not isinstance(args, tuple):
            self.fail(f"REDUCE arguments are a {type(args).__name__}, not a tuple")
        if isinstance(func, Global):
            matched = self.rules.reduce(self, func, args)
            if matched is not None:
                return matched
        return Call(func, args, "reduce")

    def _newobj(self, cls, args, kwargs):
        if not isinstance(cls, (Global, Call)):
            self.fail(f"NEWOBJ on a non-class {type(cls).__name__}")
        self.refuse_if_dangerous(cls, "NEWOBJ")
        if not isinstance(args, tuple):
            self.fail(f"NEWOBJ arguments are a {type(args).__name__}, not a tuple")
        return Call(cls, args, "newobj", kwargs)

    def _build(self, obj, state) -> None:
        if isinstance(obj, Call):
            self.refuse_if_dangerous(obj.func, "BUILD")
            obj.state = state
        elif isinstance(obj, dict):
            # OrderedDict from state_dict() gets {'_metadata': ...} (an attribute, not an item).
            # Attributes of a dict carry no weights; they are dropped.
            pass
        elif isinstance(obj, self.rules.build_state_ignored):
            # e.g. torch tensors BUILT with Python attributes (rare); the data is unaffected.
            pass
        else:
            self.fail(f"BUILD on {type(obj).__name__}")


# opcode byte -> (name, handler, argument).  Every other byte is refused as "unsupported opcode".
_OPCODES = {
    # framing
    0x80: ("PROTO", PickleVM._op_proto, None),
    0x95: ("FRAME", PickleVM._op_frame, None),
    ord("."): ("STOP", PickleVM._op_stop, None),
    # stack and marks
    ord("("): ("MARK", PickleVM._op_mark, None),
    ord("0"): ("POP", PickleVM._op_pop, None),
    ord("1"): ("POP_MARK", PickleVM._op_pop_mark, None),
    # constants
    ord("N"): ("NONE", PickleVM._op_constant, None),
    0x88: ("NEWTRUE", PickleVM._op_constant, True),
    0x89: ("NEWFALSE", PickleVM._op_constant, False),
    ord(")"): ("EMPTY_TUPLE", PickleVM._op_constant, ()),
    ord("]"): ("EMPTY_LIST", PickleVM._op_empty, list),
    ord("}"): ("EMPTY_DICT", PickleVM._op_empty, dict),
    0x8F: ("EMPTY_SET", PickleVM._op_empty, set),
    # numbers
    ord("K"): ("BININT1", PickleVM._op_uint8, None),
    ord("M"): ("BININT2", PickleVM._op_fixed, (_unpack_u2, 2)),
    ord("J"): ("BININT", PickleVM._op_fixed, (_unpack_i4, 4)),
    ord("G"): ("BINFLOAT", PickleVM._op_fixed, (_unpack_f8, 8)),
    0x8A: ("LONG1", PickleVM._op_long, 1),
    0x8B: ("LONG4", PickleVM._op_long, 4),
    # strings
    ord("X"): ("BINUNICODE", PickleVM._op_text, 4),
    0x8C: ("SHORT_BINUNICODE", PickleVM._op_text, 1),
    ord("B"): ("BINBYTES", PickleVM._op_bytes, 4),
    ord("C"): ("SHORT_BINBYTES", PickleVM._op_bytes, 1),
    # containers
    ord("t"): ("TUPLE", PickleVM._op_tuple, None),
    0x85: ("TUPLE1", PickleVM._op_tuple_n, 1),
    0x86: ("TUPLE2", PickleVM._op_tuple_n, 2),
    0x87: ("TUPLE3", PickleVM._op_tuple_n, 3),
    ord("l"): ("LIST", PickleVM._op_list, None),
    ord("a"): ("APPEND", PickleVM._op_append, None),
    ord("e"): ("APPENDS", PickleVM._op_appends, None),
    ord("d"): ("DICT", PickleVM._op_dict, None),
    ord("s"): ("SETITEM", PickleVM._op_setitem, None),
    ord("u"): ("SETITEMS", PickleVM._op_setitems, None),
    0x90: ("ADDITEMS", PickleVM._op_additems, None),
    0x91: ("FROZENSET", PickleVM._op_frozenset, None),
    # memo
    ord("q"): ("BINPUT", PickleVM._op_memo_put, 1),
    ord("r"): ("LONG_BINPUT", PickleVM._op_memo_put, 4),
    0x94: ("MEMOIZE", PickleVM._op_memo_put, 0),
    ord("h"): ("BINGET", PickleVM._op_memo_get, 1),
    ord("j"): ("LONG_BINGET", PickleVM._op_memo_get, 4),
    # globals, calls, persistent ids
    ord("c"): ("GLOBAL", PickleVM._op_global, None),
    0x93: ("STACK_GLOBAL", PickleVM._op_stack_global, None),
    ord("R"): ("REDUCE", PickleVM._op_reduce, None),
    0x81: ("NEWOBJ", PickleVM._op_newobj, None),
    0x92: ("NEWOBJ_EX", PickleVM._op_newobj_ex, None),
    ord("b"): ("BUILD", PickleVM._op_build, None),
    ord("Q"): ("BINPERSID", PickleVM._op_binpersid, None),
}
_OPNAMES = {code: entry[0] for code, entry in _OPCODES.items()}
_DISPATCH: list = [None] * 256
for _code, _entry in _OPCODES.items():
    _DISPATCH[_code] = _entry
del _code, _entry


def unpickle(data, start: int = 0, end: Optional[int] = None, persistent_load=None,
             limits: type[Limits] = Limits, budget: Optional[_CopyBudget] = None):
    """Interpret one pickle; returns ``(obj, end_offset)``."""
    return PickleVM(data, start, end, persistent_load, limits, budget).run()
