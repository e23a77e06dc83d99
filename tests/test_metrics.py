"""The server's Prometheus endpoint, scraped during a real stream and parsed with
prometheus-client's own parser."""

from __future__ import annotations

import urllib.request

from conftest import stream_frames
from prometheus_client.parser import text_string_to_metric_families

import splitcast
from splitcast.cloud.options import ServeOptions
from splitcast.models.registry import build


def _scrape(port: int) -> dict[str, float]:
    """Every sample of the endpoint by name and labels, e.g. `frames_rejected{reason=...}`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_counters_move_as_frames_flow() -> None:
    options = ServeOptions(metrics_port=0)
    with splitcast.serve(build("tiny"), options=options) as server:
        port = server.metrics_port
        assert port
        idle = _scrape(port)
        assert idle["splitcast_active_streams"] == 0
        assert idle["splitcast_frames_received_total"] == 0
        with splitcast.EdgeClient(build("tiny"), server=server.address) as edge:
            stream_frames(edge, frames=15)
            during = _scrape(port)
            assert during["splitcast_active_streams"] == 1
            stream_frames(edge, frames=15)
            later = _scrape(port)
        after = _scrape(port)
    assert 0 < during["splitcast_frames_received_total"] < later["splitcast_frames_received_total"]
    assert 0 < during["splitcast_frames_answered_total"] <= later["splitcast_frames_answered_total"]
    answered = later["splitcast_frames_answered_total"]
    assert later["splitcast_model_step_seconds_count"] == answered
    assert later["splitcast_batch_size_count"] == answered
    assert later["splitcast_queue_wait_seconds_count"] == answered
    assert later["splitcast_uplink_bytes_total"] > later["splitcast_frames_received_total"] * 1000
    assert later["splitcast_downlink_bytes_total"] > 0
    rejected = sum(v for k, v in later.items() if k.startswith("splitcast_frames_rejected"))
    accounted = answered + later["splitcast_frames_dropped_total"] + rejected
    assert 0 <= later["splitcast_frames_received_total"] - accounted <= 2  # in the mailbox or model
    assert after["splitcast_active_streams"] == 0
    assert not any("peer" in name or "ipv4" in name for name in after)
