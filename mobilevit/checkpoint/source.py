"""The bytes of one input: a regular file read once into private memory, or a caller's buffer.

:func:`read_regular_file` is also used outside the package (image files); :func:`_open_source` turns a
path, a binary file object or a bytes-like object into a :class:`_Source` for the format readers.
Imports only :mod:`.errors`.
"""

from __future__ import annotations

import os
import stat
from typing import Optional

from .errors import CheckpointError

__all__ = ["read_regular_file"]


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_regular_file(path, *, what: str = "file", max_bytes: Optional[int] = None,
                      error: type = None) -> bytearray:
    """Read a whole *regular* file into a private ``bytearray``; never blocks on special files.

    ``os.stat`` first (symlinks are followed): a FIFO, device, socket or directory raises ``error``
    (default :class:`CheckpointError`) naming the path and its kind, without opening it -- opening a
    FIFO for reading blocks until a writer appears.  The file is then opened with ``O_NONBLOCK`` and
    ``fstat`` re-checked on the descriptor (the path may have been swapped in between).  Exactly the
    ``st_size`` bytes seen by ``fstat`` are read (``max_bytes`` caps it); a file that shrinks while it is
    read is an error.  A missing file raises ``FileNotFoundError``.
    """
    error = error or CheckpointError
    path = os.fspath(path)
    st = os.stat(path)  # FileNotFoundError propagates as such
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: {what} is {_file_kind(st.st_mode)}, not a regular file; refused "
                    f"without opening it")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise error(f"{path}: cannot open {what} ({e.strerror or e})") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path}: {what} is {_file_kind(st.st_mode)}, not a regular file (it changed "
                        f"after the check); refused")
        size = st.st_size
        if max_bytes is not None and size > max_bytes:
            raise error(f"{path}: {what} of {size} bytes exceeds the cap of {max_bytes} bytes")
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            n = os.readv(fd, [view[got:]]) if hasattr(os, "readv") else _read_into(fd, view[got:])
            if n == 0:
                raise error(f"{path}: {what} shrank while being read ({got} of {size} bytes)")
            got += n
        view.release()
        return buf
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e.strerror or e})") from e
    finally:
        os.close(fd)


def _read_into(fd: int, view) -> int:
    chunk = os.read(fd, len(view))
    view[:len(chunk)] = chunk
    return len(chunk)


class _Source:
    """The bytes of one input: a private in-memory copy of a file, or a caller's buffer."""

    __slots__ = ("buf", "size", "name")

    def __init__(self, buf, name: str):
        self.buf = buf
        self.size = len(buf)
        self.name = name


def _open_source(src) -> _Source:
    if isinstance(src, _Source):
        return src
    if isinstance(src, (bytes, bytearray, memoryview)):
        mv = memoryview(src)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        return _Source(mv, "<bytes>")
    if isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        try:
            buf = read_regular_file(path, what="checkpoint")
        except FileNotFoundError as e:
            raise CheckpointError(f"{path}: cannot open (no such file)") from e
        except OSError as e:  # os.stat failures: permissions, name too long, loops
            raise CheckpointError(f"{path}: cannot open ({e.strerror or e})") from e
        if not buf:
            raise CheckpointError(f"{path}: empty file")
        return _Source(buf, path)
    if hasattr(src, "read"):
        name = getattr(src, "name", "<file object>")
        try:
            data = src.read()
        except OSError as e:
            raise CheckpointError(f"{name}: cannot read ({e})") from e
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"file object {name!r} must be opened in binary mode")
        if not data:
            raise CheckpointError(f"{name}: empty file")
        return _Source(bytearray(data) if isinstance(data, bytes) else data, str(name))
    raise TypeError(f"expected a path, a binary file object or bytes, got {type(src).__name__}")
