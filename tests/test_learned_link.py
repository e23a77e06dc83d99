"""The learned codec on the live path: a real server sends range-coded features, the edge
decodes and fuses them, and a corrupt payload costs one frame's fusion, never the edge."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from splitcast.edge.connection import CloudConnection
from splitcast.edge.loop import EdgeOptions, run_edge
from splitcast.edge.sources import MovingSceneSource
from splitcast.launch import start_server
from splitcast.models.checkpoint import load_system
from splitcast.models.codec import codec_set, get_codec
from splitcast.v1 import splitcast_pb2 as pb


def test_edge_fuses_learned_features_from_a_real_server(learned_tiny: Path, tmp_path: Path) -> None:
    with start_server(str(learned_tiny), threads=1) as server:
        summary = run_edge(
            MovingSceneSource(num_frames=60),
            EdgeOptions(
                model=str(learned_tiny),
                server=server.address,
                wait_for_server_s=30.0,
                log_path=tmp_path / "edge.jsonl",
                progress=False,
            ),
        )
    link = summary.link
    print(f"learned codec: {link['downlink_bytes'] / max(1, link['features_received']):.0f} B/msg")
    assert link["codec"] == "learned" and link["decode_errors"] == 0
    assert summary.fused_fraction > 0.5
    shape = load_system(learned_tiny).local.downlink_shape((128, 256))
    assert link["downlink_bytes"] / link["features_received"] < 0.1 * 2 * np.prod(shape)
    records = [json.loads(line) for line in (tmp_path / "edge.jsonl").read_text().splitlines()]
    assert sum(r["fused"] for r in records) == summary.fused


def test_corrupt_learned_payload_is_dropped_and_counted(learned_tiny: Path) -> None:
    system = load_system(learned_tiny)
    shape = system.local.downlink_shape(system.config.local_size)
    connection = CloudConnection("127.0.0.1:1", system.config, shape, codec_set(system.bottleneck))
    features = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    encoded = get_codec("learned", system.bottleneck).encode(features)

    def message(payload: bytes) -> pb.DownlinkMessage:
        return pb.DownlinkMessage(
            features=pb.Features(
                source_sequence=7,
                tensor=pb.Tensor(
                    codec="learned",
                    shape=list(encoded.shape),
                    dtype=pb.DTYPE_UINT8,
                    scale=1.0,
                    payload=payload,
                ),
            )
        )

    corrupt = dataclasses.replace(encoded, payload=encoded.payload[:-8]).payload
    connection._handle(message(corrupt))
    assert connection.stats.decode_errors == 1 and connection.features.latest() is None
    connection._handle(message(encoded.payload))
    assert connection.stats.decode_errors == 1 and connection.features.latest() is not None
