"""`serve`: the cloud side as a Python call, running in a background thread of this process.

For a pipeline or a notebook that wants a server next to it without a second command; the
`splitcast serve` command runs the same server in the foreground.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Sequence
from pathlib import Path

import grpc

from splitcast.cloud.options import ServeOptions
from splitcast.cloud.runtime import RemoteRuntime, warm_runtime
from splitcast.cloud.server import SplitInferenceServicer, start_server
from splitcast.models.registry import SplitSystem
from splitcast.models.runtime_names import RUNTIMES


class RunningServer:
    """A started server: `address` to give edges; `stop()` (or leaving the `with` block) shuts
    it down, letting answers in flight finish for up to `grace_s`."""

    def __init__(
        self,
        runtime: RemoteRuntime,
        options: ServeOptions,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        self.host = options.host
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._server: grpc.aio.Server | None = None
        self._servicer: SplitInferenceServicer | None = None
        self.port = 0
        self._thread = threading.Thread(
            target=self._run,
            args=(runtime, options, interceptors),
            name="splitcast-serve",
            daemon=True,
        )
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def metrics_port(self) -> int | None:
        """Where Prometheus metrics are served (None: not served)."""
        return None if self._servicer is None else self._servicer.metrics_port

    def _run(
        self,
        runtime: RemoteRuntime,
        options: ServeOptions,
        interceptors: Sequence[grpc.aio.ServerInterceptor],
    ) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            started = start_server(runtime, options, interceptors)
            self._server, self._servicer, self.port = self._loop.run_until_complete(started)
        except BaseException as exc:  # handed to the caller's thread by __init__
            self._failure = exc
            self._loop.close()
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def stop(self, grace_s: float = 2.0) -> None:
        if self._server is None or not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._drained_stop(grace_s), self._loop)
        try:
            future.result(timeout=grace_s + 5.0)
        finally:
            if self._servicer is not None:
                self._servicer.close()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5.0)
            if not self._loop.is_running():
                self._loop.close()

    async def _drained_stop(self, grace_s: float) -> None:
        assert self._server is not None and self._servicer is not None
        await self._servicer.drain()
        await self._server.stop(grace_s)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(
    model: SplitSystem | str | Path = "default",
    host: str = "127.0.0.1",
    port: int = 0,
    codec: str | None = None,
    encoder: str = RUNTIMES[0],
    options: ServeOptions | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    device: str = "auto",
    precision: str | None = None,
    compile: bool = False,
) -> RunningServer:
    """Serve `model` (a loaded system, a packaged checkpoint's name, a folder or a
    configuration name) on `host`:`port` (0: any free port), on `device` in `precision`
    (`splitcast.models.devices`; `compile`: through `torch.compile`), warmed up before it
    answers; `options`: TLS, token and limits (its host and port are replaced by these);
    `interceptors` see every call after the token check."""
    runtime = warm_runtime(model, codec, encoder, device, precision, compile)
    listen = dataclasses.replace(options or ServeOptions(), host=host, port=port)
    return RunningServer(runtime, listen, interceptors)
