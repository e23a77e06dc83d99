"""How the edge proves who it is to a server: TLS (the server's CA, or the system's roots),
a client certificate for mutual TLS, and a bearer token sent with every call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from splitcast.v1.auth import AUTHORIZATION, bearer, read_secret


@dataclass(frozen=True)
class ClientSecurity:
    """`tls`: connect over TLS, checking the server against `ca` (None: the system's roots);
    `cert` and `key`: this edge's certificate for a server that asks for one (mutual TLS);
    `token`: the bearer token (see `splitcast.v1.auth.token_from`)."""

    tls: bool = False
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    token: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")
        if (self.ca or self.cert) and not self.tls:
            raise ValueError("a CA or client certificate is for TLS: set tls as well")

    def channel(self, target: str, options: Sequence[tuple[str, Any]]) -> grpc.Channel:
        """A channel to `target` with these credentials (plaintext without TLS)."""
        if not self.tls:
            return grpc.insecure_channel(target, options=list(options))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=None if self.ca is None else read_secret(self.ca, "TLS CA"),
            private_key=None if self.key is None else read_secret(self.key, "TLS key"),
            certificate_chain=None if self.cert is None else read_secret(self.cert, "TLS cert"),
        )
        return grpc.secure_channel(target, credentials, options=list(options))

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """What every call carries: the bearer token, if any."""
        return () if self.token is None else ((AUTHORIZATION, bearer(self.token)),)
