"""Torch-free checkpoint readers: PyTorch ``torch.save`` files (zip and legacy) and safetensors.

Public API::

    load_checkpoint(path_or_fileobj, *, prefer_ema=False, key=None, check_finite="warn",
                    return_info=False) -> dict[str, np.ndarray]
    read_torch_file(path_or_fileobj, *, materialize=True, limits=Limits) -> object tree
    read_safetensors(path_or_fileobj) -> dict[str, np.ndarray]
    read_safetensors_metadata(path_or_fileobj) -> dict[str, str]
    save_safetensors(path, mapping, metadata=None) -> None
    extract_state_dict(obj, *, prefer_ema=False, key=None) -> dict[str, np.ndarray]
    detect_format(path_or_fileobj) -> "zip" | "legacy" | "safetensors"

Layout (each module imports only those above it; none imports this ``__init__``)::

    errors.py          CheckpointError, UnsafeCheckpointError
    limits.py          Limits: the caps on memory and time
    source.py          read_regular_file, _Source / _open_source: the bytes of one input
    inert.py           Inert, Global, Call, brief: what the VM builds instead of importing/calling
    torch_objects.py   StorageRef, TensorRef, UnsupportedTensor, TorchRules (the rebuild rules and
                       the allow-list of storage classes and dtypes), parse_storage_pid,
                       materialize_tree
    pickle_vm.py       PickleVM, unpickle: the generic restricted VM (opcode dispatch table,
                       deny-list of dangerous globals); default rules TorchRules
    torch_zip.py       torch.save containers (zip, legacy) -> object tree
    safetensors_io.py  safetensors read / write
    model_files.py     save_model: mobilevit's own safetensors + config.json format
    __init__.py        the public API above, state-dict extraction (load_checkpoint)

The format is detected from the bytes, never from the file name.  Nothing is ever imported from or
called by a checkpoint: pickles are *interpreted* (see :mod:`.pickle_vm`).  Every problem with a file
raises :class:`CheckpointError` (a ``ValueError``); files that try to call dangerous code raise
:class:`UnsafeCheckpointError`.  No partial result is ever returned.

A file is read once into private memory (its size checked first; only regular files are opened, see
:func:`read_regular_file`).  Arrays are NumPy views of that private buffer when the stored bytes can be
used as they are (contiguous, aligned, little-endian, not bfloat16), copies otherwise: nothing returned
aliases the file, so truncating or rewriting it afterwards changes nothing (a file mapping would raise
SIGBUS or change the loaded weights).  Peak memory is about one file size.  bfloat16 is widened to
float32 (NumPy has no bfloat16); float16 stays float16.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np


from .errors import CheckpointError, UnsafeCheckpointError
from .source import _open_source, _Source, read_regular_file  # noqa: F401 (re-exported)
from .inert import Call, Global, brief
from .limits import Limits
from .torch_objects import TensorRef, UnsupportedTensor
from .safetensors_io import (
    _read_safetensors_with_metadata, read_safetensors, read_safetensors_metadata, save_safetensors,
)
from .torch_zip import detect_format_of, read_torch_file, read_torch_tree

__all__ = [
    "load_checkpoint", "read_torch_file", "read_safetensors", "read_safetensors_metadata",
    "save_safetensors", "extract_state_dict", "detect_format", "CheckpointError",
    "UnsafeCheckpointError", "CheckpointInfo", "Limits", "Global", "Call", "TensorRef",
    "UnsupportedTensor", "read_regular_file",
]


def detect_format(path_or_fileobj) -> str:
    """``"zip"``, ``"legacy"`` or ``"safetensors"`` by content; raises for anything else."""
    return detect_format_of(_open_source(path_or_fileobj))


# ----------------------------------------------------------------------------------------------------
# State-dict extraction
# ----------------------------------------------------------------------------------------------------

_WRAPPER_KEYS = ("state_dict", "model", "module", "model_state", "model_state_dict", "net")
_EMA_KEYS = ("state_dict_ema", "model_ema", "ema", "model_ema_state_dict", "ema_state_dict")
_STRIP_PREFIXES = ("module.", "_orig_mod.")
_MAX_WRAP_DEPTH = 4
_MAX_STRIPS = 8       # "module.module._orig_mod." at most this many prefix layers


def _key_list(d: dict, n: int = 20) -> str:
    """Up to ``n`` keys of a pickle-built dict, printed in bounded time."""
    keys = [k if isinstance(k, str) else brief(k, 40) for k in list(d)[:n]]
    shown = ", ".join(repr(k[:60]) for k in sorted(keys))
    return f"[{shown}{', ...' if len(d) > n else ''}]"


@dataclass
class CheckpointInfo:
    """What :func:`load_checkpoint` did, for reporting."""

    format: str = ""
    selected_path: tuple = ()          # keys followed into a training checkpoint, e.g. ("state_dict",)
    stripped_prefixes: tuple = ()      # e.g. ("module.",)
    top_level_keys: tuple = ()
    ignored_globals: tuple = ()        # inert globals outside the returned state dict
    nonfinite_keys: tuple = ()
    metadata: dict = field(default_factory=dict)  # safetensors __metadata__


def _is_tensor(v) -> bool:
    return isinstance(v, (np.ndarray, TensorRef))


def _describe(v) -> str:
    if isinstance(v, Call):
        return f"an inert call of {v.callable_name}"
    if isinstance(v, Global):
        return f"an inert reference to {v.qualname}"
    return f"a {type(v).__name__}"


def _select(obj, prefer_ema: bool, key: Optional[str]):
    """Follow wrapper keys of a training checkpoint to the mapping that holds the tensors."""
    path: list = []
    if key is not None:
        cur = obj
        for part in key.split("/"):
            if not isinstance(cur, dict) or part not in cur:
                have = _key_list(cur) if isinstance(cur, dict) else _describe(cur)
                raise CheckpointError(f"key {key!r}: {part!r} not found (have {have})")
            cur = cur[part]
            path.append(part)
        if not isinstance(cur, dict):
            raise CheckpointError(f"key {key!r} holds {_describe(cur)}, not a state dict")
        return cur, tuple(path)
    order = (_EMA_KEYS + _WRAPPER_KEYS) if prefer_ema else (_WRAPPER_KEYS + _EMA_KEYS)
    cur = obj
    for _ in range(_MAX_WRAP_DEPTH):
        if not isinstance(cur, dict):
            break
        for k in order:
            if k in cur and isinstance(cur[k], dict):
                cur = cur[k]
                path.append(k)
                break
        else:
            break
    if not isinstance(cur, dict):
        where = "/".join(path) or "the file"
        hint = ""
        if isinstance(cur, Call):
            hint = " (a pickled model object: save model.state_dict() instead)"
        raise CheckpointError(f"{where} holds {_describe(cur)}, not a state dict{hint}")
    return cur, tuple(path)


def _strip_prefixes(sd: dict) -> tuple[dict, tuple]:
    stripped = []
    changed = True
    while changed and sd and len(stripped) < _MAX_STRIPS:
        changed = False
        for p in _STRIP_PREFIXES:
            if all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                stripped.append(p)
                changed = True
    return sd, tuple(stripped)


def _extract(obj, prefer_ema: bool, key: Optional[str]):
    chosen, path = _select(obj, prefer_ema, key)
    if not chosen:
        raise CheckpointError(f"{'/'.join(path) or 'the file'}: empty state dict")
    for k, v in chosen.items():
        if not isinstance(k, str):
            raise CheckpointError(f"state dict key {brief(k, 60)} is not a string")
        if isinstance(v, UnsupportedTensor):
            raise CheckpointError(f"tensor entry {brief(k, 80)}: unsupported ({v.reason})")
        if isinstance(v, Call):
            raise CheckpointError(
                f"tensor entry {brief(k, 80)} is built by unsupported callable {v.callable_name}")
        if not _is_tensor(v):
            where = "/".join(path) or "the top level"
            top = _key_list(obj) if isinstance(obj, dict) else "-"
            raise CheckpointError(f"entry {brief(k, 80)} under {where} is {_describe(v)}, not a tensor "
                                  f"(top-level keys: {top})")
    # Everything is validated before anything is converted: no partial result.  A tensor pickled
    # twice (tied weights) is one TensorRef: convert it once.
    done: dict = {}
    out = {}
    for k, v in chosen.items():
        if isinstance(v, TensorRef):
            if id(v) not in done:
                done[id(v)] = v.materialize(k)
            v = done[id(v)]
        out[k] = v
    out, stripped = _strip_prefixes(out)
    return out, path, stripped


def extract_state_dict(obj, *, prefer_ema: bool = False, key: Optional[str] = None
                       ) -> dict[str, np.ndarray]:
    """Find the state dict in a checkpoint object tree and return ``{name: ndarray}``.

    Training checkpoints are unwrapped through ``state_dict``, ``model``, ``module``, ... then the EMA
    keys (``state_dict_ema``, ``model_ema``, ``ema``); ``prefer_ema=True`` tries the EMA keys first;
    ``key="a/b"`` selects a path explicitly.  ``module.`` (DDP) and ``_orig_mod.`` (torch.compile)
    prefixes shared by all keys are stripped.  Every value must be a tensor; anything else (an inert
    call, an unsupported tensor kind, a plain number) raises :class:`CheckpointError` naming the key.
    """
    return _extract(obj, prefer_ema, key)[0]


def _inert_globals(obj, skip, limits=Limits) -> tuple:
    """Qualified names of inert globals reachable from ``obj`` outside the subtree ``skip``."""
    seen: set = set()
    names: set = set()
    stack = [(obj, 0)]
    while stack:
        o, depth = stack.pop()
        if o is skip or id(o) in seen or depth > limits.max_tree_depth:
            continue
        if isinstance(o, Global):
            names.add(o.qualname)
            continue
        if isinstance(o, (list, tuple, set, frozenset, dict, Call)):
            seen.add(id(o))
            if isinstance(o, dict):
                stack.extend((v, depth + 1) for v in o.values())
            elif isinstance(o, Call):
                stack.extend([(o.func, depth + 1), (o.args, depth + 1), (o.kwargs, depth + 1),
                              (o.state, depth + 1)])
            else:
                stack.extend((v, depth + 1) for v in o)
    names.discard("collections.OrderedDict")
    return tuple(sorted(names))


def _nonfinite_keys(sd: dict) -> tuple:
    bad = []
    for k, v in sd.items():
        if v.dtype.kind in "fc" and v.size and not np.isfinite(v).all():
            bad.append(k)
    return tuple(bad)


def load_checkpoint(path_or_fileobj, *, prefer_ema: bool = False, key: Optional[str] = None,
                    check_finite: str = "warn", return_info: bool = False):
    """Load ``{name: ndarray}`` from a torch.save file (zip or legacy) or a safetensors file.

    The format is detected by content.  ``check_finite``: ``"warn"`` (default) warns once if any float
    tensor holds NaN/Inf, ``"raise"`` raises :class:`CheckpointError`, ``"ignore"`` skips the check.
    With ``return_info=True`` returns ``(state_dict, CheckpointInfo)``.
    """
    if check_finite not in ("warn", "raise", "ignore"):
        raise ValueError(f"check_finite must be 'warn', 'raise' or 'ignore', not {check_finite!r}")
    src = _open_source(path_or_fileobj)
    fmt = detect_format_of(src)
    info = CheckpointInfo(format=fmt)
    if fmt == "safetensors":
        tree, info.metadata = _read_safetensors_with_metadata(src)
    else:
        tree = read_torch_tree(src)
    info.top_level_keys = (tuple(sorted(k if isinstance(k, str) else brief(k, 60) for k in tree))
                           if isinstance(tree, dict) else ())
    sd, info.selected_path, info.stripped_prefixes = _extract(tree, prefer_ema, key)
    if fmt != "safetensors":
        chosen = _select(tree, prefer_ema, key)[0]
        info.ignored_globals = _inert_globals(tree, chosen)
    if check_finite != "ignore":
        info.nonfinite_keys = _nonfinite_keys(sd)
        if info.nonfinite_keys:
            shown = ", ".join(repr(k) for k in info.nonfinite_keys[:5])
            more = f" and {len(info.nonfinite_keys) - 5} more" if len(info.nonfinite_keys) > 5 else ""
            msg = f"{src.name}: NaN/Inf values in {shown}{more}"
            if check_finite == "raise":
                raise CheckpointError(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return (sd, info) if return_info else sd
