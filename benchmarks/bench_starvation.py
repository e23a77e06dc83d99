"""Whether streams of the largest frames a server accepts starve anyone else.

    .venv/bin/python benchmarks/bench_starvation.py [--duration 20] [--model default]

Against one `splitcast serve` process: a well-behaved stream (`splitcast loadgen`'s, paced at
12 fps) and a client asking `Info` every 50 ms, first alone, then beside eight streams each
sending PNG frames of noise (the most bytes and decoding work per frame) at the largest size
the server accepts, as fast as the server reads them. Prints side by side the well-behaved
stream's answers per second (and the share it keeps), `Info` latency p50/p99, the large
streams' answers per second and the server's resident memory.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np

from splitcast.cloud.uplink import largest_accepted
from splitcast.data.images import encode_image
from splitcast.launch import start_server
from splitcast.loadgen import LoadOptions, run_load
from splitcast.v1 import splitcast_pb2 as pb
from splitcast.v1 import splitcast_pb2_grpc as pb_grpc

LARGE_STREAMS = 8
PACED_FPS = 12.0
INFO_INTERVAL_S = 0.05


def _largest_frame(info: pb.ServerInfo) -> pb.UplinkFrame:
    height, width = largest_accepted((info.remote_input.height, info.remote_input.width))
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    data = encode_image(rgb, "png")
    if len(data) > info.max_message_bytes - 1024:
        raise SystemExit(f"a {width}x{height} PNG of noise exceeds the server's message limit")
    image = pb.EncodedImage(format=pb.IMAGE_FORMAT_PNG, data=data, width=width, height=height)
    return pb.UplinkFrame(image=image, requested_delay_ticks=3.0)


class LargeStreams:
    """Streams sending `frame` as fast as the server reads, each reply counted; the frame is
    serialized once (all with one sequence number), so this client spends its CPU time on
    sending rather than on copying bytes, as a client made to flood a server would."""

    def __init__(self, address: str, frame: pb.UplinkFrame, count: int) -> None:
        self.message = frame.SerializeToString()
        self.answers = [0] * count
        self._stop = threading.Event()
        self._channels = [grpc.insecure_channel(address) for _ in range(count)]
        self._threads = [
            threading.Thread(target=self._run, args=(index,), daemon=True) for index in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def _messages(self) -> Iterator[bytes]:
        while not self._stop.is_set():
            yield self.message

    def _run(self, index: int) -> None:
        call = self._channels[index].stream_stream(
            "/splitcast.v1.SplitInference/Stream",
            request_serializer=lambda message: message,
            response_deserializer=pb.DownlinkMessage.FromString,
        )
        replies = call(self._messages())
        try:
            for reply in replies:
                self.answers[index] += reply.HasField("answer")
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                print(f"large stream {index} ended: {exc.code().name} {exc.details()}")

    def stop(self) -> None:
        self._stop.set()
        for channel in self._channels:
            channel.close()
        for thread in self._threads:
            thread.join(timeout=5)


def _info_latencies(address: str, stop: threading.Event, out: list[float]) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.SplitInferenceStub(channel)
        while not stop.wait(INFO_INTERVAL_S):
            start = time.perf_counter()
            stub.Info(pb.InfoRequest(), timeout=30)
            out.append((time.perf_counter() - start) * 1000)


def _phase(address: str, duration: float) -> dict:
    """The paced stream's report and Info latencies over `duration` s."""
    stop, latencies = threading.Event(), []
    prober = threading.Thread(target=_info_latencies, args=(address, stop, latencies))
    prober.start()
    report = run_load(LoadOptions(address, streams=1, duration_s=duration, fps=PACED_FPS))
    stop.set()
    prober.join()
    return {
        "paced": report["paced"],
        "info_p50_ms": statistics.median(latencies),
        "info_p99_ms": float(np.percentile(latencies, 99)),
        "info_calls": len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of each phase")
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    with start_server(args.model) as server:
        with grpc.insecure_channel(server.address) as channel:
            info = pb_grpc.SplitInferenceStub(channel).Info(pb.InfoRequest(), timeout=30)
        frame = _largest_frame(info)
        rss = {"start": server.rss_mb()}
        alone = _phase(server.address, args.duration)
        large = LargeStreams(server.address, frame, LARGE_STREAMS)
        time.sleep(2.0)  # every large stream open and sending
        started, start = list(large.answers), time.monotonic()
        loaded = _phase(server.address, args.duration)
        elapsed = time.monotonic() - start
        counted = zip(large.answers, started, strict=True)
        large_rate = [(now - then) / elapsed for now, then in counted]
        rss["under load"] = server.rss_mb()
        large.stop()
    width, height = frame.image.width, frame.image.height
    print(f"model {info.model_name}: {LARGE_STREAMS} streams of {width}x{height} PNG noise "
          f"({len(frame.image.data) / 1e6:.1f} MB a frame) beside one paced at {PACED_FPS:g} fps, "
          f"{args.duration:g} s a phase")  # fmt: skip
    print("                         alone    beside the large streams")
    a, b = alone["paced"]["answers_per_s"], loaded["paced"]["answers_per_s"]
    print(f"  paced answers/s     {a:9.2f} {b:9.2f}  (kept {b / a:.0%})")
    for key in ("latency_p50_ms", "latency_p99_ms"):
        print(f"  paced {key:14}{alone['paced'][key]:9} {loaded['paced'][key]:9}")
    for key in ("info_p50_ms", "info_p99_ms"):
        print(f"  {key:20}{alone[key]:9.1f} {loaded[key]:9.1f}")
    print(f"  Info calls          {alone['info_calls']:9} {loaded['info_calls']:9}")
    print(f"  large streams' answers/s each: {', '.join(f'{r:.2f}' for r in large_rate)}")
    print(f"  server RSS: {rss['start']:.0f} MB at start, {rss['under load']:.0f} MB under load")


if __name__ == "__main__":
    main()
