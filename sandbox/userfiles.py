"""Paths the user names on the command line: looked at with stat() before anything opens them.

Opening a named pipe for reading blocks until someone writes to it, and a device or a
directory is never what a user meant by "my script" or "my database"; so every path argument
that is opened (a script, files to lint, a scenario file, a --from database, an --export
destination) must be a regular file, and anything else is a one-line error before any open().
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from sandbox.errors import UserError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def what_is(mode: int) -> str:
    """What a file of this mode is, in words ("a named pipe (FIFO)")."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def unreadable(path: Path) -> str | None:
    """Why `path` cannot be read as a regular file ("no such file", "it is a directory", ...),
    or None when it is one. Only stat() is called: a named pipe is never opened."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:  # a name too long, a symlink loop, a folder we may not enter
        return str(exc.strerror or exc)
    except ValueError:  # a NUL byte in the name
        return "not a valid file name"
    if stat.S_ISREG(mode):
        return None
    return f"it is {what_is(mode)}, not a regular file"


def require_readable(path: Path, shown: str | None = None) -> None:
    """Raise a one-line UserError unless `path` is a regular file that exists."""
    why = unreadable(path)
    if why is not None:
        raise UserError(f"cannot read {shown or path}: {why}")


def require_writable(path: Path) -> None:
    """An output path: absent (it will be created) or a regular file (it will be replaced).

    A named pipe, a device or a directory there is refused: writing would block, reach a
    device, or fail half-way through a set of files.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return  # nothing to block on; the write itself reports what the system says
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise UserError(f"cannot write {path}: not a valid file name") from None
    if not stat.S_ISREG(mode):
        raise UserError(f"cannot write {path}: it is {what_is(mode)}, not a regular file")
