"""Text that reaches a terminal: control characters from data shown, never obeyed.

Row values, error messages, statement text and file names can hold anything. An ESC starts an
escape sequence that can recolour, move or clear the terminal; a CR rewrites the line; a
newline or tab inside a table cell breaks the table. Text output therefore shows every control
character (C0, DEL, C1) as an escape: `\\n`, `\\r`, `\\t`, else `\\xNN`. A backslash already in
the data is left as it is.

JSON keeps exact values: `json.dumps` escapes C0 itself, and `json_text` escapes DEL and C1 as
`\\u00NN` too (with ensure_ascii=False they would be written raw), which decodes to the same
string.
"""

from __future__ import annotations

import json
from typing import Any

_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
CONTROLS = (*range(0x20), 0x7F, *range(0x80, 0xA0))
_ESCAPED: dict[int, str] = {code: _NAMED.get(code, f"\\x{code:02x}") for code in CONTROLS}
_JSON_RAW = {code: f"\\u{code:04x}" for code in (0x7F, *range(0x80, 0xA0))}


def escape_controls(text: str) -> str:
    """`text` on one line with every control character written as an escape."""
    return text.translate(_ESCAPED)


def terminal_lines(lines: list[str]) -> str:
    """Report lines joined for a terminal: each one stays one line, whatever data it holds."""
    return "\n".join(escape_controls(line) for line in lines)


def json_text(document: Any, **options: Any) -> str:
    """`document` as indented JSON, readable (not ASCII-only) yet safe to print."""
    # Outside strings JSON is ASCII, so every DEL or C1 character is inside a string value.
    text = json.dumps(document, indent=2, ensure_ascii=False, **options)
    return text.translate(_JSON_RAW)
