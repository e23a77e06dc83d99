"""How a client proves who it is, shared by the server and the edge: a bearer token in call
metadata (read from a file or `SPLITCAST_TOKEN`) and PEM files for TLS."""

from __future__ import annotations

import os
from pathlib import Path

AUTHORIZATION = "authorization"
TOKEN_ENV = "SPLITCAST_TOKEN"
"""Environment variable holding the bearer token when no token file is given."""


def bearer(token: str) -> str:
    """The `authorization` metadata value carrying `token`."""
    return f"Bearer {token}"


def read_secret(path: Path, what: str) -> bytes:
    """A certificate, key or token file's bytes; a missing or empty file is a ValueError
    naming it (never its content)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path}: {exc.strerror}") from None
    if not data.strip():
        raise ValueError(f"the {what} {path} is empty")
    return data


def token_from(path: Path | None) -> str | None:
    """The bearer token in `path` (whitespace around it removed), else `SPLITCAST_TOKEN`'s
    value, else None."""
    if path is not None:
        return read_secret(path, "token file").decode().strip()
    return os.environ.get(TOKEN_ENV) or None
