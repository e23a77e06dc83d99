"""Who may use a server: TLS, mutual TLS and a bearer token.

- `TlsFiles` -> `server_credentials`: the server's certificate and key; with a client CA, only
  clients presenting a certificate that CA signed complete the handshake (mutual TLS). A
  server with TLS listens on TLS only.
- `TokenCheck`: every call must carry `authorization: Bearer <token>` metadata, compared in
  constant time; anything else ends the call with `UNAUTHENTICATED` before it reaches a
  service. The token is never logged. Health checking may be left open (`open_health`) so a
  load balancer without the token can probe it; reflection and the model never are.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from splitcast.v1.auth import AUTHORIZATION, bearer, read_secret

log = logging.getLogger("splitcast.cloud")

if TYPE_CHECKING:
    from prometheus_client import Counter

HEALTH_PREFIX = "/grpc.health.v1.Health/"


@dataclass(frozen=True)
class TlsFiles:
    """The server's certificate chain and key (PEM), and the CA its clients must be signed by
    (None: any client may connect)."""

    cert: Path
    key: Path
    client_ca: Path | None = None


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    client_ca = None if files.client_ca is None else read_secret(files.client_ca, "client CA")
    pair = (read_secret(files.key, "TLS key"), read_secret(files.cert, "TLS certificate"))
    return grpc.ssl_server_credentials(
        [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


class TokenCheck(grpc.aio.ServerInterceptor):
    """Refuses every call without the right bearer token (see the module)."""

    def __init__(
        self, token: str, open_health: bool = False, refused: Counter | None = None
    ) -> None:
        """`refused`: counts the calls turned away."""
        if not token:
            raise ValueError("the bearer token is empty")
        self._expected = bearer(token).encode()
        self.open_health = open_health
        self.refused = refused

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or (self.open_health and details.method.startswith(HEALTH_PREFIX)):
            return handler
        given = dict(details.invocation_metadata or ()).get(AUTHORIZATION, "")
        if hmac.compare_digest(str(given).encode(), self._expected):
            return handler
        log.warning("refused %s: missing or wrong bearer token", details.method)
        if self.refused is not None:
            self.refused.inc()
        return _refusing(handler)


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that ends the call with UNAUTHENTICATED."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

    async def refuse_streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator:
        await refuse(request, context)
        yield

    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse_streaming, **codec)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, **codec)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse_streaming, **codec)
    return grpc.unary_unary_rpc_method_handler(refuse, **codec)
