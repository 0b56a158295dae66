"""Models of the torch objects found in ``torch.save`` pickles, and the rules that build them.

The generic VM (:mod:`.pickle_vm`) builds inert :class:`~.inert.Global` / :class:`~.inert.Call` nodes;
this module knows what torch meant by some of them:

* :data:`STORAGE_TYPES` / the torch dtype table -- the storage classes and dtypes we accept (the
  allow-list of torch globals, with the element size of each);
* :class:`StorageRef` -- one storage record, its bytes loaded lazily by the container reader;
* :class:`TensorRef` -- a bounds-checked strided view of a storage, materialized into NumPy;
* :class:`UnsupportedTensor` -- a tensor we recognise but refuse (quantized, sparse, float8 ...);
* :class:`TorchRules` -- the reconstruction rules the VM consults on ``REDUCE`` / ``BUILD``;
* :func:`parse_storage_pid` -- validation of ``('storage', ...)`` persistent ids;
* :func:`materialize_tree` -- replaces every :class:`TensorRef` in a tree by an array.

Imports only :mod:`.errors`, :mod:`.limits` and :mod:`.inert`; nothing here is imported or called from
a file.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from .errors import CheckpointError
from .inert import Call, Global, Inert, brief
from .limits import _INT64_MAX, Limits

__all__ = [
    "STORAGE_TYPES", "StorageRef", "TensorRef", "UnsupportedTensor", "TorchRules", "parse_storage_pid",
    "materialize_tree",
]


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

_MAX_NDIM = 64
_MAX_DIM = (1 << 31) - 1  # one tensor dimension: the C core indexes dimensions with int


class StorageRef(Inert):
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


class UnsupportedTensor(Inert):
    """A tensor-like entry we recognise but refuse to convert (quantized, sparse, float8, ...)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason[:300]

    def __repr__(self) -> str:
        return f"<unsupported tensor: {self.reason}>"


class TensorRef(Inert):
    """A dense strided view of a :class:`StorageRef`, validated against the storage's bounds.

    Sizes, strides and offset are in elements.  :meth:`materialize` returns a NumPy array: a zero-copy
    view of the private in-memory copy of the file when the view is contiguous, aligned and native-endian; otherwise a copy.
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
        """Elements the tensor claims (product of its shape)."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    def materialize(self, name: str = "<tensor>") -> np.ndarray:
        """The tensor as a NumPy array (a view of the file's bytes when possible), checked against its storage."""
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

    Contiguous views cost nothing (they alias the in-memory copy of the file).  The container reader sets the limit
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
# Reconstruction rules: torch's rebuild callables, pattern matched (never called)
# ----------------------------------------------------------------------------------------------------

class TorchRules:
    """What :class:`~.pickle_vm.PickleVM` builds for the torch callables it recognises.

    The VM asks :meth:`reduce` about every ``REDUCE`` of a (non-dangerous) :class:`Global`:

    * ``collections.OrderedDict()`` -> a plain ``dict``;
    * ``torch._utils._rebuild_tensor`` / ``_rebuild_tensor_v2`` / ``_rebuild_tensor_v3`` on a
      :class:`StorageRef` -> a :class:`TensorRef` whose view is checked against the storage's bounds
      (or an :class:`UnsupportedTensor` for quantized / complex storages, exotic dtypes, conj/neg bits);
    * ``_rebuild_parameter`` / ``_rebuild_parameter_with_state`` -> the tensor inside;
    * ``torch._tensor._rebuild_from_type_v2`` -> the inner rebuild (Tensor subclasses, Parameters);
    * any other ``torch._utils._rebuild_*`` -> :class:`UnsupportedTensor` (sparse, nested, ...).

    Everything else stays an inert :class:`Call`.  ``BUILD`` on a tensor leaves its data unchanged
    (:attr:`build_state_ignored`).  Structural errors are raised through ``vm.fail`` so that they name
    the opcode and byte offset.  ``budget`` bounds the bytes materialization may copy.
    """

    build_state_ignored = (TensorRef, UnsupportedTensor)

    def __init__(self, budget: Optional[_CopyBudget] = None, limits: type[Limits] = Limits):
        self.budget = budget if budget is not None else _CopyBudget(limits.max_copy_slack_bytes)

    def reduce(self, vm, g: Global, args: tuple):
        """The object a REDUCE of ``g(*args)`` stands for; None means 'leave it an inert Call'.

        Called by the VM after its own checks (``g`` is not dangerous, ``args`` is a tuple).
        """
        mod, name = g.module, g.name
        if mod == "collections" and name == "OrderedDict":
            if args == ():
                return {}
            return None
        if mod == "torch._utils":
            if name == "_rebuild_tensor_v2":
                if len(args) not in (6, 7):
                    vm.fail(f"_rebuild_tensor_v2 takes 6 or 7 arguments, got {len(args)}")
                if len(args) == 7 and args[6]:
                    return UnsupportedTensor(f"tensor with metadata {brief(args[6], 80)} "
                                             f"(conj/neg bits)")
                return self._tensor(vm, args[0], args[1], args[2], args[3], None)
            if name == "_rebuild_tensor":
                if len(args) != 4:
                    vm.fail(f"_rebuild_tensor takes 4 arguments, got {len(args)}")
                return self._tensor(vm, args[0], args[1], args[2], args[3], None)
            if name == "_rebuild_tensor_v3":
                if len(args) not in (7, 8):
                    vm.fail(f"_rebuild_tensor_v3 takes 7 or 8 arguments, got {len(args)}")
                dt = args[6]
                if not isinstance(dt, Global) or dt.module != "torch":
                    vm.fail("_rebuild_tensor_v3 dtype is not a torch dtype global")
                info = _TORCH_DTYPES.get(dt.name)
                if info is None:
                    return UnsupportedTensor(f"dtype torch.{dt.name}")
                if len(args) == 8 and args[7]:
                    return UnsupportedTensor("tensor with metadata (conj/neg bits)")
                return self._tensor(vm, args[0], args[1], args[2], args[3], info)
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
                vm.refuse_if_dangerous(args[0], "_rebuild_from_type_v2")
                inner = self.reduce(vm, args[0], args[2])
                if isinstance(inner, (TensorRef, UnsupportedTensor)):
                    return inner
            return None
        return None

    def _tensor(self, vm, storage, offset, size, stride, dtype_info):
        if not isinstance(storage, StorageRef):
            vm.fail(f"tensor storage is a {type(storage).__name__}, not a storage persistent id")
        if storage.code is None:
            return UnsupportedTensor(f"storage type {storage.type_name}")
        if not _is_int(offset) or offset < 0:
            vm.fail(f"tensor storage offset {brief(offset)} is not a non-negative int")
        if not isinstance(size, tuple) or not isinstance(stride, tuple):
            vm.fail(f"tensor size {brief(size)} / stride {brief(stride)} are not tuples")
        if len(size) != len(stride):
            vm.fail(f"tensor size {brief(size)} and stride {brief(stride)} differ in length")
        if len(size) > _MAX_NDIM:
            vm.fail(f"tensor with {len(size)} dimensions (cap {_MAX_NDIM})")
        for v in size:
            if not _is_int(v) or v < 0:
                vm.fail(f"tensor size {brief(size)} has a negative or non-int entry")
            if v > _MAX_DIM:
                vm.fail(f"tensor size {brief(size)} has a dimension of {v} >= 2**31 (the C core's "
                           f"int range)")
        for v in stride:
            if not _is_int(v) or v < 0:
                vm.fail(f"tensor stride {brief(stride)} has a negative or non-int entry")
        if dtype_info is not None and storage.root is not None:
            vm.fail("_rebuild_tensor_v3 on a legacy view storage")
        if dtype_info is None:
            code, itemsize = storage.code, storage.itemsize
            storage_numel = storage.numel
        else:
            code, itemsize = dtype_info
            if storage.type_name != "UntypedStorage":
                if (storage.code, storage.itemsize) != (code, itemsize):
                    vm.fail(f"_rebuild_tensor_v3 dtype {code} on a typed {storage.type_name}")
                storage_numel = storage.numel
            else:
                if storage.nbytes % itemsize:
                    vm.fail(f"untyped storage of {storage.nbytes} bytes is not a whole number of "
                               f"{itemsize}-byte elements")
                storage_numel = storage.nbytes // itemsize
        numel = 1
        for v in size:
            numel *= v
        if numel > _INT64_MAX or numel * itemsize > _INT64_MAX:
            vm.fail(f"tensor size {size!r} overflows int64")
        if numel:
            last = offset
            for sz, st in zip(size, stride):
                last += (sz - 1) * st
            if last > _INT64_MAX or last * itemsize > _INT64_MAX:
                vm.fail(f"tensor view (offset {offset}, size {size!r}, stride {stride!r}) "
                           f"overflows int64")
            if last >= storage_numel:
                vm.fail(f"tensor view (offset {offset}, size {size!r}, stride {stride!r}) reaches "
                           f"element {last} of storage {storage.key!r} with {storage_numel} elements")
        elif offset > storage_numel:
            vm.fail(f"empty tensor offset {offset} beyond storage {storage.key!r} "
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
