"""The splitcast gRPC server: one latest-wins session per edge stream.

Each stream has a reader task that only drops frames into the session's mailbox, and a worker
loop that decodes the newest frame, runs the remote model conditioned on the requested delay
and sends the encoded answer back. Decoding runs on a small pool of threads and model work on
one dedicated thread, both shared by all streams, so the event loop (and with it `Info` and
health checks) stays responsive whatever streams send. A bad frame gets a `FrameError` reply on
its own stream (its warning rate-limited per stream); bytes that are no message end their
stream with INVALID_ARGUMENT; nothing one client sends can stop the server or other streams.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from splitcast.cloud.batching import Batcher
from splitcast.cloud.metrics import ServerMetrics
from splitcast.cloud.options import GPU_MAX_BATCH, ServeOptions, keepalive_options
from splitcast.cloud.runtime import EncodedAnswer, RemoteRuntime, Work
from splitcast.cloud.security import TokenCheck, server_credentials
from splitcast.cloud.session import LatestMailbox, ReadRate
from splitcast.cloud.uplink import MalformedMessage, add_servicer, size_over_input, validated
from splitcast.data.images import ImageDecodeError
from splitcast.logs import RateLimitedLog
from splitcast.models.remote_stream import RemoteStream
from splitcast.v1 import splitcast_pb2 as pb
from splitcast.v1 import splitcast_pb2_grpc as pb_grpc
from splitcast.v1.wire import IMAGE_FORMATS, tensor_message, tensor_specs

log = logging.getLogger("splitcast.cloud")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SplitInference"].full_name
DECODE_THREADS = 2
"""Threads decoding uplink images of ordinary size (`uplink.LARGE_PIXELS`) for all streams: each
stream has at most one frame being decoded (its loop awaits it) and decoders release the
GIL, so two use a second core without crowding a small machine. Larger frames are decoded on
one thread of their own, so they never hold up these."""
UPLINK_WINDOW_BYTES = 1024 * 1024
"""How many bytes of a stream gRPC takes from its sender ahead of the reader (a fixed HTTP/2
window instead of one grown by bandwidth probing, which let streams of large frames that the
reader takes slowly pile gigabytes into the server's buffers). It holds many frames of the
model's input size, so a paced edge is not held back by it over a long round trip either."""
REJECTION_LOG_INTERVAL_S = 5.0
"""After a stream's first rejected frame, at most one warning line per this many seconds."""


class IdleStream(Exception):
    """A stream that sent nothing for the idle timeout."""


class MalformedStream(Exception):
    """A stream that sent bytes that are not an uplink frame."""


@dataclass
class _Pending:
    frame: pb.UplinkFrame
    received_ns: int


class SplitInferenceServicer(pb_grpc.SplitInferenceServicer):
    def __init__(
        self, runtime: RemoteRuntime, options: ServeOptions, metrics: ServerMetrics
    ) -> None:
        self.runtime = runtime
        self.options = options
        self.metrics = metrics
        self.metrics_port: int | None = None
        """Where `/metrics` is served (None: not served)."""
        self.health: health.aio.HealthServicer | None = None
        self.draining = False
        self._mailboxes: set[LatestMailbox[_Pending]] = set()
        self._compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="remote-model")
        self._decode = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="uplink-decode")
        self._decode_large = ThreadPoolExecutor(1, thread_name_prefix="uplink-decode-large")
        self._rejections = RateLimitedLog(log, REJECTION_LOG_INTERVAL_S)
        max_batch = options.max_batch or (GPU_MAX_BATCH if runtime.device.type == "cuda" else 1)
        self.batcher = Batcher(self._step_batch, self._compute, max_batch, options.max_wait_s)
        self.active_streams = 0

    async def drain(self) -> None:
        """Stop taking work, as a replica leaving a pool should: health NOT_SERVING first (a
        load balancer stops sending), new streams refused with UNAVAILABLE, and every open
        stream ended with status OK once its frame in progress is answered (its edge
        reconnects, to another replica behind a proxy)."""
        self.draining = True
        if self.health is not None:
            await self.health.enter_graceful_shutdown()
        for mailbox in self._mailboxes:
            mailbox.close()
        log.info("draining: %d open streams told to end", len(self._mailboxes))

    def close(self) -> None:
        self.batcher.close()
        self._compute.shutdown(wait=False, cancel_futures=True)
        self._decode.shutdown(wait=False, cancel_futures=True)
        self._decode_large.shutdown(wait=False, cancel_futures=True)
        self.metrics.close()

    async def Info(
        self, request: pb.InfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerInfo:
        if isinstance(request, MalformedMessage):
            self.metrics.errors.labels("malformed_message").inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(request))
        config = self.runtime.config
        return pb.ServerInfo(
            model_name=config.name,
            model_version=config.version,
            remote_input=pb.Size(height=config.remote_size[0], width=config.remote_size[1]),
            local_input=pb.Size(height=config.local_size[0], width=config.local_size[1]),
            combiner=self.runtime.combiner.name,
            tensors=tensor_specs(self.runtime.combiner.wire()),
            fps=config.fps,
            context_frames=config.context_frames,
            num_classes=config.num_classes,
            max_message_bytes=self.options.max_message_bytes,
            uplink=pb.UplinkEncoding(
                format=IMAGE_FORMATS[config.uplink_format], quality=config.uplink_quality
            ),
        )

    async def Stream(
        self, request_iterator: AsyncIterator[pb.UplinkFrame], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DownlinkMessage]:
        peer = context.peer()
        if self.draining:
            self.metrics.calls_refused.labels("draining").inc()
            await context.abort(grpc.StatusCode.UNAVAILABLE, "this server is shutting down")
        if self.active_streams >= self.options.max_streams:
            log.warning("stream from %s refused: %d streams open", peer, self.active_streams)
            self.metrics.calls_refused.labels("max_streams").inc()
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this server serves at most {self.options.max_streams} streams at once; "
                "try again later or another replica",
            )
        mailbox: LatestMailbox[_Pending] = LatestMailbox()
        rate = ReadRate(self.options.max_stream_fps)
        reader = asyncio.create_task(self._read(request_iterator, mailbox, rate))
        state = self.runtime.new_stream()
        self._mailboxes.add(mailbox)
        self.active_streams += 1
        self.metrics.active_streams.inc()
        log.info("stream opened by %s", peer)
        dropped = 0
        try:
            while (pending := await mailbox.take()) is not None:
                self.metrics.frames_dropped.inc(mailbox.dropped - dropped)
                dropped = mailbox.dropped
                yield await self._reply(pending, state, peer, mailbox.dropped, rate.flooding)
        except IdleStream as exc:
            self.metrics.calls_refused.labels("idle").inc()
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{exc}: stream closed, reconnect")
        except MalformedStream as exc:
            self._rejections.warning("malformed", "stream from %s ended: %s", peer, exc)
            self.metrics.errors.labels("malformed_message").inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception as exc:
            self.metrics.errors.labels(type(exc).__name__).inc()
            raise
        finally:
            reader.cancel()
            self._mailboxes.discard(mailbox)
            self.active_streams -= 1
            self.metrics.active_streams.dec()
            suppressed = self._rejections.forget(peer)
            log.info(
                "stream from %s closed (%d frames dropped, %d rejection warnings suppressed)",
                peer,
                mailbox.dropped,
                suppressed,
            )

    async def _reply(
        self, pending: _Pending, state: RemoteStream, peer: str, dropped: int, flooding: bool
    ) -> pb.DownlinkMessage:
        """The answer to one frame, or the FrameError saying why there is none; a flooding
        stream, and a frame of more than `LARGE_PIXELS` times the model input's pixels, wait
        until no other stream's frame does (for the model and for decoding)."""
        frame, metrics = pending.frame, self.metrics
        taken_ns = time.time_ns()
        remote_size = self.runtime.config.remote_size
        oversized = size_over_input(frame, remote_size) > 1.0
        decoders = self._decode_large if oversized else self._decode
        try:
            image, delay = await asyncio.get_running_loop().run_in_executor(
                decoders, validated, frame, remote_size
            )
        except ImageDecodeError as exc:
            self._rejections.warning(
                peer, "frame %d from %s rejected: %s", frame.sequence, peer, exc
            )
            metrics.frames_rejected.labels(exc.reason).inc()
            error = pb.FrameError(
                source_sequence=frame.sequence, reason=exc.reason, message=str(exc)
            )
            return pb.DownlinkMessage(error=error, frames_dropped=dropped)
        decoded_ns = time.time_ns()
        work = Work(state, frame.sequence, image, delay)
        priority = int(flooding or oversized)
        encoded, context, steps = await self.batcher.run(work, priority=priority)
        steps.taken_time_ns, steps.decoded_time_ns = taken_ns, decoded_ns
        tensors = [tensor_message(name, t) for name, t in encoded.items()]
        sent_ns = time.time_ns()
        metrics.frames_answered.inc()
        metrics.queue_wait.observe((steps.model_start_time_ns - pending.received_ns) / 1e9)
        metrics.answer_age.observe((sent_ns - pending.received_ns) / 1e9)
        metrics.downlink_bytes.inc(sum(len(t.payload) for t in tensors))
        answer = pb.Answer(
            source_sequence=frame.sequence,
            source_capture_time_ns=frame.capture_time_ns,
            conditioned_delay_ticks=delay,
            tensors=tensors,
            server_receive_time_ns=pending.received_ns,
            server_send_time_ns=sent_ns,
            context_sequences=context,
            steps=steps,
        )
        return pb.DownlinkMessage(answer=answer, frames_dropped=dropped)

    def _step_batch(
        self, batch: Sequence[Work]
    ) -> list[tuple[EncodedAnswer, list[int], pb.ServerSteps]]:
        """The model's step on a batch, on the model thread: each answer encoded, with the
        times the step started, computed the answers and encoded this one."""
        start_ns = time.time_ns()
        answers = self.runtime.answer_batch(batch)
        end_ns = time.time_ns()
        self.metrics.batch_size.observe(len(batch))
        self.metrics.model_step.observe((end_ns - start_ns) / 1e9)
        results = []
        for answer, context in answers:
            encoded = self.runtime.encode_answer(answer)
            steps = pb.ServerSteps(
                model_start_time_ns=start_ns,
                model_end_time_ns=end_ns,
                encoded_time_ns=time.time_ns(),
            )
            results.append((encoded, context, steps))
        return results

    async def _read(
        self,
        request_iterator: AsyncIterator[pb.UplinkFrame],
        mailbox: LatestMailbox[_Pending],
        rate: ReadRate,
    ) -> None:
        """Frames into the mailbox, at most `max_stream_fps` a second: a faster sender is not
        read sooner, so gRPC's flow control keeps its frames in its own buffers (it costs this
        server nothing and other streams keep their turns); a flooding one (`ReadRate`) is
        read slower still and yields its model turns, and one of large frames
        (`size_over_input`) slower in proportion to their pixels; no frame for
        `idle_timeout_s` ends the stream."""
        options, loop = self.options, asyncio.get_running_loop()
        remote_size = self.runtime.config.remote_size
        frames = aiter(request_iterator)
        try:
            while True:
                asked = loop.time()
                try:
                    frame = await asyncio.wait_for(anext(frames), options.idle_timeout_s)
                except StopAsyncIteration:
                    break
                if isinstance(frame, MalformedMessage):
                    raise MalformedStream(str(frame))
                read_at = loop.time()
                rate.read(read_at - asked, size_over_input(frame, remote_size))
                self.metrics.frames_received.inc()
                self.metrics.uplink_bytes.inc(len(frame.image.data))
                mailbox.offer(_Pending(frame, time.time_ns()))
                await asyncio.sleep(max(0.0, read_at + rate.interval_s - loop.time()))
        except asyncio.TimeoutError:
            mailbox.close(IdleStream(f"no frame for {options.idle_timeout_s:g} s"))
        except Exception as exc:
            mailbox.close(exc)
        else:
            mailbox.close()


async def start_server(
    runtime: RemoteRuntime,
    options: ServeOptions,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> tuple[grpc.aio.Server, SplitInferenceServicer, int]:
    """Start serving; returns the server, the servicer and the bound port. `interceptors` see
    every call after the token check. A port already in use is an OSError: the port is not
    shared with another process (no SO_REUSEPORT), so edges never reach a different model."""
    metrics = ServerMetrics()
    refused = metrics.calls_refused.labels("unauthenticated")
    checks = [TokenCheck(options.token, options.open_health, refused)] if options.token else []
    server = grpc.aio.server(
        interceptors=[*checks, *interceptors],
        options=[
            ("grpc.max_receive_message_length", options.max_message_bytes),
            ("grpc.max_send_message_length", options.max_message_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", UPLINK_WINDOW_BYTES),
            *keepalive_options(options),
        ],
    )
    servicer = SplitInferenceServicer(runtime, options, metrics)
    add_servicer(servicer, server)
    health_servicer = servicer.health = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{options.host}:{options.port}"
    try:
        if options.tls is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, server_credentials(options.tls))
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen on {address}: the port is in use or the address is not ours")
    if options.metrics_port is not None:
        servicer.metrics_port = metrics.serve_http(options.host, options.metrics_port)
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, servicer, bound
