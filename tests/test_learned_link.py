"""The learned codec on the live path: a real server sends range-coded features, the edge
decodes and fuses them, and a corrupt payload costs one answer, never the edge."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from splitcast.edge.connection import CloudConnection, ExpectedServer
from splitcast.models.checkpoint import load_system
from splitcast.models.codec import codec_set, get_codec
from splitcast.v1 import splitcast_pb2 as pb
from splitcast.v1.wire import tensor_message

if TYPE_CHECKING:
    from conftest import EdgeRun


def test_edge_fuses_learned_features_from_a_real_server(
    learned_tiny: Path, tmp_path: Path, edge_against_own_server: EdgeRun
) -> None:
    summary, records = edge_against_own_server(learned_tiny, tmp_path / "edge.jsonl")
    link = summary.link
    print(f"learned codec: {link['downlink_bytes'] / max(1, link['answers_received']):.0f} B/msg")
    assert link["decode_errors"] == 0 and link["answers_received"] > 0
    assert summary.combined_fraction > 0.5
    shape = load_system(learned_tiny).local.downlink_shape((128, 256))
    assert link["downlink_bytes"] / link["answers_received"] < 0.1 * 2 * np.prod(shape)
    assert sum(r["mode"] == "combined" for r in records) == summary.combined


def test_corrupt_learned_payload_is_dropped_and_counted(learned_tiny: Path) -> None:
    system = load_system(learned_tiny)
    combiner = system.combiner()
    assert [(t.name, t.codec) for t in combiner.wire()] == [("features", "learned")]
    shape = system.local.downlink_shape(system.config.local_size)
    expected = ExpectedServer.for_system(system)
    connection = CloudConnection("127.0.0.1:1", expected, codec_set(system.bottleneck))
    features = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    encoded = get_codec("learned", system.bottleneck).encode(features)

    def message(payload: bytes) -> pb.DownlinkMessage:
        return pb.DownlinkMessage(
            answer=pb.Answer(
                source_sequence=7,
                tensors=[tensor_message("features", dataclasses.replace(encoded, payload=payload))],
            )
        )

    corrupt = dataclasses.replace(encoded, payload=encoded.payload[:-8]).payload
    connection._handle(message(corrupt))
    assert connection.stats.decode_errors == 1 and connection.answers.latest() is None
    connection._handle(message(encoded.payload))
    assert connection.stats.decode_errors == 1 and connection.answers.latest() is not None
