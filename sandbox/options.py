"""Where a sandbox is to live, as the command line or the app asks for it.

Kept apart from sandbox.targets (which opens sandboxes, and imports what that takes) so the
app can read its options and draw its first frame before any of that is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class TargetOptions:
    engine: str = "sqlite"
    url: str | None = field(default=None, repr=False)  # may hold a password
    from_file: Path | None = None
    busy_timeout_ms: int = 200
    cwd: Path = field(default_factory=Path.cwd)
