"""The one rule for thread counts: ``mobilevit.set_num_threads``, per-call
``num_threads=`` (forward, segment, profile, ops, Predictor, Dask/Ray) and the
CLI's ``--threads`` all take an int in 1..MAX_THREADS.  Anything else (0,
negatives, huge values, bools, floats, strings) is a ValueError naming the
rule; nothing unchecked ever reaches OpenMP, which would exit() the process
if it cannot create the threads."""
import numbers
from typing import Optional

from . import _C

MAX_THREADS = _C.MAX_THREADS


def check_num_threads(value, what: str = "num_threads") -> Optional[int]:
    """``value`` as an int in 1..MAX_THREADS; None stays None (the default)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what} must be an integer between 1 and {MAX_THREADS} "
                         f"(as for mobilevit.set_num_threads), got {value!r}")
    n = int(value)
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"{what} must be between 1 and {MAX_THREADS} (as for mobilevit.set_num_threads), got {n}")
    return n


def threads_arg(value) -> int:
    """A per-call count for the C core: 0 (= the module setting) for None."""
    n = check_num_threads(value)
    return 0 if n is None else n
