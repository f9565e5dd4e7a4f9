"""Copying to the clipboard: the one way a terminal app can, and what it can promise.

Textual's `copy_to_clipboard` sends the text to the terminal (OSC 52); whether it reaches the
system clipboard is up to the terminal (and tmux, and ssh). So the notification says the text
was sent to the terminal's clipboard, and what it was, never that it was "copied" for sure.
"""

from __future__ import annotations

from textual.app import App

from sandbox.transcript import plural
from sandbox.ui.text import one_line


def send_to_clipboard(app: App[object], text: str, what: str) -> None:
    """Send `text` to the terminal's clipboard and say what went."""
    app.copy_to_clipboard(text)
    preview = one_line(text)
    if len(preview) > 40:
        preview = preview[:39] + "…"
    app.notify(
        f"{what} sent to the terminal's clipboard ({plural(len(text), 'character')}): {preview}"
        " — if nothing pastes, your terminal does not accept OSC 52 copies",
        title="copy",
        markup=False,
        timeout=6,
    )
