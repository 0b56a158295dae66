"""The caps of the checkpoint readers (a leaf module: it imports nothing from the package).

Every size or count a file could use to make a reader spend memory or time is bounded by one of these
constants, never by a size claimed inside the file.  Subclass :class:`Limits` to tighten them (the
fuzz harnesses do) and pass the subclass as ``limits=``.
"""

from __future__ import annotations

__all__ = ["Limits"]

_INT64_MAX = (1 << 63) - 1


class Limits:
    """Caps that bound the interpreter's memory and time by constants, not by file claims."""

    max_pickle_bytes = 256 << 20      # size of one pickle stream (data.pkl)
    max_ops = 20_000_000              # opcodes executed per pickle
    max_stack = 1_000_000             # items on the stack, including those saved under MARKs
    max_marks = 1_000                 # MARK nesting
    max_memo = 1_000_000              # memo entries
    max_str_bytes = 16 << 20          # one str / bytes object
    max_int_bytes = 64                # LONG1 / LONG4 payload (int width 512 bits)
    max_key_depth = 8                 # nesting of a tuple used as a dict key / set item
    max_key_items = 64                # items of one tuple/frozenset key counted with repetition
    max_composite_keys = 1024         # tuple/frozenset keys + set items per pickle (hash-flood cap)
    max_tree_depth = 200              # nesting walked by materialize_tree / extract_state_dict
    max_copy_slack_bytes = 256 << 20  # copies allowed beyond 4 x the file's storage bytes
    max_storage_numel = _INT64_MAX    # elements of one storage (its record must exist anyway)
