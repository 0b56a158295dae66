"""Atheris harness: the restricted pickle VM (``mobilevit.checkpoint.pickle_vm``) on its own.

Input: one mode byte, then the pickle bytes.  Mode bits:

* bit 0 -- a ``persistent_load`` like the zip reader's (``('storage', cls, key, location, numel)``
  ids become storages) whose data is zeros placed right before a PROT_NONE guard page, so a view
  that reads past its storage faults instead of silently reading neighbouring memory;
* bit 1 -- tiny :class:`Limits` (so every cap is reachable from short inputs);
* bit 2 -- also run ``extract_state_dict`` on the result.

Accepted outcomes: a result, or :class:`CheckpointError` (the VM's one error type).  On success every
:class:`TensorRef` in the tree must lie inside its storage (an independent bounds check), and
``materialize_tree`` must produce arrays of the declared shapes or raise CheckpointError.

Run::

    python tests/fuzz/fuzz_pickle.py tests/fuzz/corpus/pickle -max_total_time=60
"""
from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import sys

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
    from mobilevit.checkpoint import CheckpointError, extract_state_dict
    from mobilevit.checkpoint import pickle_vm as vm

ARENA = 1 << 20  # storages up to 1 MiB are backed by real (zero) memory


class TinyLimits(vm.Limits):
    max_ops = 200
    max_stack = 24
    max_marks = 6
    max_memo = 12
    max_str_bytes = 64
    max_int_bytes = 9
    max_key_depth = 3
    max_tree_depth = 10
    max_copy_slack_bytes = 4096


def _guarded_arena():
    """ARENA bytes of zeros followed by an inaccessible page."""
    page = mmap.PAGESIZE
    m = mmap.mmap(-1, ARENA + page, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
        if libc.mprotect(ctypes.c_void_p(addr + ARENA), ctypes.c_size_t(page), 0) != 0:
            raise OSError(ctypes.get_errno(), "mprotect")
    except (OSError, AttributeError, TypeError):
        pass  # no guard page: the explicit bounds check below still applies
    return memoryview(m)[:ARENA]


_ARENA_MV = _guarded_arena()


def _loader(ref):
    nbytes = ref.numel * ref.itemsize
    if nbytes > ARENA:
        raise CheckpointError(f"harness: storage of {nbytes} bytes exceeds the {ARENA}-byte arena")
    code = "u2" if ref.code == "bf16" else ("?" if ref.code == "b1" else ref.code)
    if ref.numel == 0:
        return np.empty(0, np.dtype(code))
    # End exactly at the guard page.
    return np.frombuffer(_ARENA_MV, dtype=np.dtype(code).newbyteorder("<"), count=ref.numel,
                         offset=ARENA - nbytes)


def _walk(obj, limit=100000):
    """Every node reachable from obj (cycle-safe, iterative)."""
    seen, stack, n = set(), [obj], 0
    while stack and n < limit:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        n += 1
        yield o
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif isinstance(o, vm.Call):
            stack.extend([o.func, o.args, o.kwargs, o.state])


def _check_tensor(t: "vm.TensorRef") -> None:
    assert isinstance(t.shape, tuple) and isinstance(t.stride, tuple) and len(t.shape) == len(t.stride)
    assert all(isinstance(v, int) and v >= 0 for v in t.shape + t.stride + (t.offset,)), t
    numel = 1
    for s in t.shape:
        numel *= s
    storage_numel = t.storage.numel
    if numel:
        last = t.offset + sum((s - 1) * st for s, st in zip(t.shape, t.stride))
        assert last < storage_numel, f"view reaches element {last} of {storage_numel}: {t!r}"
    else:
        assert t.offset <= storage_numel, t
    root = t.storage
    while root.root is not None:
        assert root.root_offset + root.numel <= root.root.numel
        root = root.root


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    mode, payload = data[0], data[1:]
    limits = TinyLimits if mode & 2 else vm.Limits
    storages: dict = {}

    def persistent_load(pid):
        key, type_name, info, location, numel, _ = vm.parse_storage_pid(pid, legacy=False)
        ref = storages.get(key)
        if ref is None:
            ref = vm.StorageRef(key, type_name, info[0], info[1], numel, location)
            ref._loader = _loader
            storages[key] = ref
        elif (ref.type_name, ref.numel) != (type_name, numel):
            raise CheckpointError("storage declared twice")
        return ref

    budget = vm._CopyBudget(limits.max_copy_slack_bytes)
    try:
        obj, end = vm.unpickle(payload, 0, None, persistent_load if mode & 1 else None, limits, budget)
    except CheckpointError:
        return
    assert 0 < end <= len(payload)
    tensors = [o for o in _walk(obj) if isinstance(o, vm.TensorRef)]
    for t in tensors:
        _check_tensor(t)
    budget.allow(4 * sum(min(r.numel * r.itemsize, ARENA) for r in storages.values()))
    try:
        tree = vm.materialize_tree(obj, limits)
    except CheckpointError:
        return
    for o in _walk(tree):
        if isinstance(o, np.ndarray):
            if o.size and o.nbytes <= (1 << 22):
                o.tobytes()  # touch every element
        assert not isinstance(o, vm.TensorRef), "materialize_tree left a TensorRef"
    if mode & 4:
        try:
            sd = extract_state_dict(tree)
        except CheckpointError:
            return
        assert isinstance(sd, dict) and all(isinstance(k, str) and isinstance(v, np.ndarray)
                                            for k, v in sd.items())


def main(argv=None) -> None:
    if atheris is None:
        raise SystemExit("atheris is not installed: pip install atheris")
    atheris.Setup(list(sys.argv if argv is None else argv), TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
