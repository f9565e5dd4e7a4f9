"""The statements a learner ran, browsed like a shell's history.

Stepping back from what is being typed keeps it as the draft, and stepping forward past the
newest statement brings that draft back exactly. Each session browses on its own (its own
place and draft); the statements are shared by all of them.
"""

from __future__ import annotations


class History:
    def __init__(self) -> None:
        self.entries: list[str] = []
        self._at: dict[str, int] = {}  # where a session browses; absent: at its draft
        self._drafts: dict[str, str] = {}

    def add(self, text: str, key: str) -> None:
        """A statement was run from `key`: newest now (once, if run twice in a row)."""
        if text.strip() and (not self.entries or self.entries[-1] != text):
            self.entries.append(text)
        self.stop(key)

    def stop(self, key: str) -> None:
        """`key` is back at its draft (it ran something, or took another text)."""
        self._at.pop(key, None)
        self._drafts.pop(key, None)

    def step(self, key: str, current: str, step: int) -> str | None:
        """The text to show after stepping `step` (-1 older, +1 newer) from `current`, or
        None when there is nowhere to go."""
        newest = len(self.entries)
        at = self._at.get(key, newest)
        if at != newest and current != self.entries[at]:
            at = newest  # the shown statement was edited: that is the draft now, kept
        to = max(0, min(newest, at + step))
        if to == at:
            return None
        if at == newest:
            self._drafts[key] = current  # leaving the draft: kept as typed
        if to == newest:
            self._at.pop(key, None)
            return self._drafts.pop(key, "")
        self._at[key] = to
        return self.entries[to]

    def search(self, query: str) -> list[str]:
        """Statements containing `query` (any case), newest first, each once."""
        wanted = query.lower()
        found = [e for e in reversed(self.entries) if wanted in e.lower()]
        return list(dict.fromkeys(found))
