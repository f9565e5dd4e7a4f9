"""A result grid written to a CSV or JSON file, as the learner saw it.

The two formats say NULL the same way everywhere, and differently from every text:

- CSV (RFC 4180, CRLF line ends, a header row of column names): SQL NULL is an empty field
  with no quotes; every text value is quoted, so the empty string is `""` and the text 'NULL'
  is `"NULL"`. Numbers and booleans (true, false) are bare; bytes are PostgreSQL's `\\x` hex
  text, quoted.
- JSON: `{"columns": [...], "rows": [[...], ...], ...}` with SQL NULL as `null`. Rows are
  arrays (a result may repeat a column name), values as `sandbox.outcome.json_value` gives
  them (a numeric is a string of its exact digits). The file also says where the rows came
  from: the session, the statement, the first row's number, whether more rows exist, and the
  order they are in.

A file is never overwritten: the name gets -2, -3, ... until it is new, and it is created
exclusively, so even a file that appears meanwhile is left alone.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sandbox.errors import UserError
from sandbox.outcome import json_value

Format = Literal["csv", "json"]
FORMATS: tuple[Format, ...] = ("csv", "json")
_TRIES = 1000


@dataclass(frozen=True)
class ShownResult:
    """The rows on screen and what they are."""

    session: str
    statement: str
    line: int
    columns: list[str]
    rows: Sequence[tuple[Any, ...]]
    first_row: int = 1  # the number of `rows[0]` in the query's result
    more_rows: bool = False  # the query has rows after these
    order: str = "as the database returned them"


def csv_field(value: Any) -> str:
    """One CSV field: NULL empty and bare, a number bare, anything else quoted."""
    if value is None:
        return ""
    # NaN and the infinities are words (quoted below), not numbers a spreadsheet reads.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return str(value)
    shown = json_value(value)
    text = json.dumps(shown, ensure_ascii=False) if isinstance(shown, list | dict) else str(shown)
    return '"' + text.replace('"', '""') + '"'


def to_csv(result: ShownResult) -> str:
    header = ",".join('"' + name.replace('"', '""') + '"' for name in result.columns)
    lines = [header, *(",".join(csv_field(v) for v in row) for row in result.rows)]
    return "\r\n".join(lines) + "\r\n"


def to_json(result: ShownResult) -> str:
    document = {
        "session": result.session,
        "statement": result.statement,
        "line": result.line,
        "columns": result.columns,
        "first_row": result.first_row,
        "row_count": len(result.rows),
        "more_rows": result.more_rows,
        "order": result.order,
        "null": "SQL NULL is null; every text is a string",
    }
    head = json.dumps(document, ensure_ascii=False, indent=2)
    # One row a line: a 500-row page stays readable (and diffable) as text.
    rows = ",\n".join(
        "    " + json.dumps([json_value(v) for v in row], ensure_ascii=False) for row in result.rows
    )
    body = f"[\n{rows}\n  ]" if rows else "[]"
    return head[:-2] + f',\n  "rows": {body}\n}}\n'


def write_result(
    result: ShownResult, directory: Path, fmt: Format, now: dt.datetime | None = None
) -> Path:
    """Write `result` in `fmt` to a new file in `directory`; returns its path.

    Raises a one-line UserError when the directory cannot take it.
    """
    text = to_csv(result) if fmt == "csv" else to_json(result)
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    stem = f"dbsandbox-result-{_safe(result.session)}-line{result.line}-{stamp}"
    for attempt in range(1, _TRIES + 1):
        path = directory / (f"{stem}.{fmt}" if attempt == 1 else f"{stem}-{attempt}.{fmt}")
        try:
            # "x": created here, or not at all; newline="" keeps CSV's CRLF as written.
            with path.open("x", encoding="utf-8", newline="") as out:
                out.write(text)
        except FileExistsError:
            continue
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
        return path
    raise UserError(f"cannot write the result in {directory}: {_TRIES} files named {stem} exist")


def _safe(name: str) -> str:
    """A session name as part of a file name (session names are letters and digits already)."""
    return "".join(c if c.isalnum() else "_" for c in name) or "session"
