""".sql files the editor opens and saves, and finding text in what it holds.

A file to open must be a regular file (never a pipe or device: see sandbox.userfiles), small
enough to edit, and UTF-8 text; anything else is a one-line reason, never half a file.
"""

from __future__ import annotations

from pathlib import Path

from sandbox.errors import UserError
from sandbox.userfiles import require_readable, require_writable

MAX_BYTES = 1_000_000  # an editor buffer, not a dump: larger files belong to `dbsandbox run`


def read_sql_file(path: Path) -> str:
    require_readable(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise UserError(
                f"cannot open {path}: {size:,} bytes is more than the editor takes "
                f"({MAX_BYTES:,}); run it with `dbsandbox run {path}`"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"cannot open {path}: not UTF-8 text (byte {exc.start})") from None
    if "\0" in text:
        raise UserError(f"cannot open {path}: it holds NUL bytes, so it is not SQL text")
    return text


def write_sql_file(path: Path, text: str) -> None:
    require_writable(path)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


def find_next(text: str, query: str, offset: int) -> tuple[int, int, bool] | None:
    """The next match of `query` (any case) at or after `offset`, wrapping to the top: its
    start, how many matches there are in all, and whether it wrapped. None if there is none."""
    if not query:
        return None
    haystack, needle = text.lower(), query.lower()
    if len(haystack) != len(text):  # lower() changed a length (rare letters): match exactly
        haystack, needle = text, query
    count = haystack.count(needle)
    if not count:
        return None
    found = haystack.find(needle, offset)
    if found >= 0:
        return found, count, False
    return haystack.find(needle), count, True
