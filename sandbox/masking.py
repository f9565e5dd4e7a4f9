"""Keep passwords out of everything dbsandbox shows, logs and exports.

Masking is structural. dbsandbox shows a server only through `mask_url`, which renders the
parsed URL with every password in it (the user's, and any password query parameter) as ***.
Nothing else is rewritten: data, SQL, column names and fixed words such as the engine name
stay verbatim even when they equal the password. Replacing a password by value everywhere
would turn `postgres:postgres` into an engine called *** and a row holding 'postgres' into
***, and each *** would tell the reader what the password is.

Driver and connection errors are the one kind of text dbsandbox does not render itself:
libpq and psycopg2 may echo part of a connection string. `scrub` masks password-shaped parts
of such text and, as a last resort, the passwords this process connected with. It is for
those messages only, never for the engine's answers to the learner's SQL.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()

# `password=S`, `PASSWORD = 'it''s'`, `sslpassword=S`, `?password=S&…`: the key, then the value
# quoted libpq-style or up to the next blank (everything after it in a URL is masked too).
_KEYWORD_PASSWORD = re.compile(
    r"(?i)(\w*password\s*=\s*)('(?:[^'\\]|\\.|'')*'?|\S+)",
)
# `scheme://user:password@`: greedy up to the last "@", so an unencoded "@" in the password
# does not leave its tail in view.
_USERINFO_PASSWORD = re.compile(r"(://[^:/@\s]*:)(\S*)(@)")


def is_password_key(key: str) -> bool:
    """Whether a connection parameter holds a password (libpq: password, sslpassword)."""
    return "password" in key.lower()


def register_secret(secret: str | None, shown: Iterable[str | None] = ()) -> None:
    """Remember a password that `scrub` masks in connection errors, as a last resort.

    `shown` are the parts of the URL that dbsandbox shows anyway (user, host, database): a
    password equal to one of them is not registered, since masking it would hide nothing and
    turn `user "postgres"` in an authentication error into `user "***"`.
    """
    if secret and secret not in set(shown):
        with _lock:
            _secrets.add(secret)


def scrub(text: str) -> str:
    """A driver or connection error message with every password in it masked."""
    text = _KEYWORD_PASSWORD.sub(lambda m: m.group(1) + MASK, text)
    text = _USERINFO_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def mask_url(url: URL) -> str:
    """A URL for people: every password shown as ***, no driver name, nothing else changed."""
    bare = url.set(drivername=url.get_backend_name(), query={})
    shown = bare.render_as_string(hide_password=True)
    pairs = []
    for key, values in url.query.items():
        for value in (values,) if isinstance(values, str) else values:
            # Quoted as little as a URL allows: a socket directory or host list stays readable.
            masked = MASK if is_password_key(key) else quote(value, safe="/,:")
            pairs.append(f"{quote(key, safe='')}={masked}")
    return shown + ("?" + "&".join(pairs) if pairs else "")


def first_line(exc: BaseException) -> str:
    """An error in one line for people: a driver error's primary message (else its text),
    its first non-blank line, scrubbed of passwords. psycopg2 is looked at only if loaded."""
    psycopg2 = sys.modules.get("psycopg2")
    diag = getattr(exc, "diag", None) if psycopg2 and isinstance(exc, psycopg2.Error) else None
    primary = diag.message_primary if diag is not None else None
    text = primary or str(getattr(exc, "orig", None) or exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return scrub(lines[0] if lines else type(exc).__name__)
