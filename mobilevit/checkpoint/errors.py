"""The exceptions of :mod:`mobilevit.checkpoint` (a leaf module: it imports nothing from the package).

Every problem with a file raises :class:`CheckpointError` (a ``ValueError``); a file that tries to
call dangerous code raises its subclass :class:`UnsafeCheckpointError`.  Both are re-exported by the
package, which is where callers should import them from.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "UnsafeCheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint file is malformed, truncated, unsupported or exceeds a safety cap."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint tries to invoke code (e.g. ``os.system`` via REDUCE).  Nothing was executed."""
