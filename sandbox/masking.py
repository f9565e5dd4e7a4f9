"""Keep passwords out of every output, log, error and export.

Every password the sandbox learns (from a URL) is registered here, and every piece of text
that leaves the process passes through `redact`. Driver errors can echo connection strings,
so redacting by value is the only guarantee that does not depend on what a driver prints.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Remember a secret so that `redact` removes it from any text."""
    if secret:
        with _lock:
            _secrets.add(secret)


def redact(text: str) -> str:
    """Replace every registered secret in `text` by ***."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def mask_url(url: URL) -> str:
    """Render a URL for people: the password, if any, shown as ***, without the driver name."""
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)
