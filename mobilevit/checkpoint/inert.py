"""The inert objects the pickle VM builds instead of importing or calling anything.

* :class:`Inert` -- the base of every object the VM builds that stands for something it did not
  construct: such objects hash by identity (they may be dict keys) and have a short, bounded ``repr``;
* :class:`Global` -- a ``GLOBAL`` / ``STACK_GLOBAL`` reference (module and name; nothing imported);
* :class:`Call` -- a ``REDUCE`` / ``NEWOBJ`` that was recorded, not executed;
* :func:`brief` -- a bounded ``repr`` for error messages about pickle-built data.

The torch objects (:mod:`.torch_objects`) subclass :class:`Inert`.  Imports nothing from the package.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = ["Inert", "Global", "Call", "brief"]


class Inert:
    """Base of the VM's stand-in objects: identity-hashed, with a ``repr`` of bounded length."""

    __slots__ = ()


class Global(Inert):
    """An inert reference to ``module.name`` from a GLOBAL opcode.  Never imported."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str):
        self.module = module
        self.name = name

    @property
    def qualname(self) -> str:
        """``module.name`` of the global."""
        return f"{self.module}.{self.name}"

    def __repr__(self) -> str:
        return f"<inert global {self.qualname}>"


class Call(Inert):
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
        """Dotted name of what the call would have called."""
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


# Bounded printing: error messages must not expand memo-shared structures.

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
        elif isinstance(o, Inert):
            emit(repr(o))  # bounded: names are capped, shapes are validated ints
        else:
            emit(f"<{type(o).__name__}>")

    go(obj, 0)
    text = "".join(out)
    return text if len(text) <= limit + 16 else text[:limit] + "..."
