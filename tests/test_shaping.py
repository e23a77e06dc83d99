"""Link shaping arithmetic: jitter distributions (KS tests), correlation, bandwidth, traces."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from splitcast.netem.profiles import built_in_profiles, load_profile
from splitcast.netem.shaping import (
    ConditionTrace,
    ConditionWire,
    DelaySampler,
    DelaySpec,
    RateWire,
    ShapingError,
    TraceWire,
)

DELAY_MS, JITTER_MS, DRAWS = 100.0, 10.0, 4000


def _sampled(distribution: str, correlation: float = 0.0, seed: int = 1) -> np.ndarray:
    sampler = DelaySampler(DelaySpec(DELAY_MS, JITTER_MS, distribution, correlation), seed)
    return np.array([sampler.next_s() * 1000 for _ in range(DRAWS)])


def _reference(distribution: str) -> np.ndarray:
    """Independent draws from scipy, scaled to mean DELAY_MS and spread JITTER_MS."""
    rng = np.random.default_rng(12345)
    lomax = stats.lomax(3.0)
    standard_pareto = (lomax.rvs(DRAWS, random_state=rng) - lomax.mean()) / lomax.std()
    standard = {
        "uniform": stats.uniform(-math.sqrt(3), 2 * math.sqrt(3)).rvs(DRAWS, random_state=rng),
        "normal": stats.norm().rvs(DRAWS, random_state=rng),
        "pareto": standard_pareto,
        "paretonormal": 0.5 * stats.norm().rvs(DRAWS, random_state=rng)
        + math.sqrt(0.75) * standard_pareto,
    }[distribution]
    return DELAY_MS + JITTER_MS * standard


@pytest.mark.parametrize("distribution", ["uniform", "normal", "pareto", "paretonormal"])
def test_jitter_matches_its_distribution(distribution: str) -> None:
    sampled = _sampled(distribution)
    assert stats.ks_2samp(sampled, _reference(distribution)).pvalue > 0.01
    # the Pareto tail (shape 3) has no fourth moment, so its sample spread is noisy
    assert abs(sampled.mean() - DELAY_MS) < 1.0 and abs(sampled.std() / JITTER_MS - 1) < 0.15


def test_the_ks_test_tells_distributions_apart() -> None:
    assert stats.ks_2samp(_sampled("pareto"), _reference("normal")).pvalue < 1e-4
    assert stats.ks_2samp(_sampled("uniform"), _reference("normal")).pvalue < 1e-4


def test_same_seed_same_delays_and_correlation_is_applied() -> None:
    assert np.array_equal(_sampled("normal"), _sampled("normal"))
    assert not np.array_equal(_sampled("normal"), _sampled("normal", seed=2))
    correlated = _sampled("normal", correlation=0.8)
    lag1 = np.corrcoef(correlated[:-1], correlated[1:])[0, 1]
    assert abs(lag1 - 0.8) < 0.05
    assert abs(correlated.std() - JITTER_MS) < 1.5


def test_delay_is_never_negative() -> None:
    sampler = DelaySampler(DelaySpec(1.0, 50.0, "normal"), 0)
    assert min(sampler.next_s() for _ in range(1000)) == 0.0


def test_rate_wire_serialises_back_to_back() -> None:
    wire = RateWire(8.0)  # 1 MB/s
    assert wire.transmit(0.0, 1000) == pytest.approx(0.001)
    assert wire.transmit(0.0, 1000) == pytest.approx(0.002)  # queued behind the first
    assert wire.transmit(1.0, 500) == pytest.approx(1.0005)  # idle link: starts on arrival


def test_trace_wire_follows_the_delivery_opportunities(tmp_path: Path) -> None:
    trace = tmp_path / "trace.up"
    trace.write_text("1\n1\n5\n10\n")  # 4 packets per 10 ms
    wire = TraceWire.load(trace)
    assert wire.mean_rate_mbit() == pytest.approx(4 * 1500 * 8 / 0.010 / 1e6)
    assert wire.transmit(100.0, 3000) == pytest.approx(100.001)  # two packets at 1 ms
    assert wire.transmit(100.0, 1500) == pytest.approx(100.005)
    assert wire.transmit(100.0, 1000) == pytest.approx(100.010)
    assert wire.transmit(100.0, 400) == pytest.approx(100.010)  # shares the 10 ms packet
    assert wire.transmit(100.0, 200) == pytest.approx(100.011)  # the trace repeats
    assert wire.transmit(100.502, 1) == pytest.approx(100.505)  # unused packets are lost


def test_bad_settings_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ShapingError, match="distribution"):
        DelaySpec(10, 1, "cauchy")
    with pytest.raises(ShapingError, match="correlation"):
        DelaySpec(10, 1, "normal", 1.0)
    with pytest.raises(ShapingError, match="bandwidth"):
        RateWire(0)
    with pytest.raises(ShapingError, match="not found"):
        TraceWire.load(tmp_path / "missing")
    (tmp_path / "bad").write_text("1\nfast\n")
    with pytest.raises(ShapingError, match="bad:2"):
        TraceWire.load(tmp_path / "bad")


def test_built_in_and_user_profiles(tmp_path: Path) -> None:
    assert built_in_profiles() == ["lan", "wifi", "lte", "5g", "satellite"]
    lte = load_profile("lte")
    assert lte.uplink.rate_mbit == 10 and lte.downlink.rate_mbit == 40
    assert lte.uplink.delay.distribution == "paretonormal" and lte.uplink.loss.rto_ms == 200
    mine = tmp_path / "mine.yaml"
    mine.write_text("rural:\n  uplink: {delay_ms: 60, rate_mbit: 2}\n  downlink: {delay_ms: 50}\n")
    rural = load_profile(str(mine))
    assert rural.name == "rural" and rural.uplink.delay.delay_ms == 60
    assert rural.downlink.rate_mbit is None
    assert load_profile(f"{mine}:rural") == rural
    with pytest.raises(ShapingError, match="unknown link profile 'moon'"):
        load_profile("moon")
    (tmp_path / "typo.yaml").write_text("x:\n  uplink: {delay: 5}\n")
    with pytest.raises(ShapingError, match="unknown settings \\['delay'\\]"):
        load_profile(str(tmp_path / "typo.yaml"))
    (tmp_path / "broken.yaml").write_text("x:\n  uplink: {delay_ms: 5\n")
    with pytest.raises(ShapingError) as raised:
        load_profile(str(tmp_path / "broken.yaml"))
    assert str(raised.value).startswith(f"{tmp_path / 'broken.yaml'} line 3 column 1: not valid")
    assert "\n" not in str(raised.value)


def test_condition_trace_replays_delay_and_bandwidth(tmp_path: Path) -> None:
    csv = tmp_path / "drive.csv"
    csv.write_text("time_s,delay_ms,bandwidth_mbit\n0,20,8\n1.5,80,\n")
    trace = ConditionTrace.load(csv)
    assert trace.at(10.0).delay_ms == 20 and trace.at(11.0).rate_mbit == 8
    assert trace.at(11.5).delay_ms == 80 and trace.at(99.0).rate_mbit is None
    wire = ConditionWire(ConditionTrace.load(csv))
    assert wire.transmit(0.0, 1000) == pytest.approx(0.001)  # 8 Mbit/s: 1 ms per kB
    assert wire.transmit(2.0, 10**6) == pytest.approx(2.0)  # unlimited after 1.5 s
    (tmp_path / "late.csv").write_text("time_s,delay_ms,bandwidth_mbit\n1,20,8\n")
    with pytest.raises(ShapingError, match="time_s 0"):
        ConditionTrace.load(tmp_path / "late.csv")
    (tmp_path / "bad.csv").write_text("time_s,delay_ms,bandwidth_mbit\n0,fast,8\n")
    with pytest.raises(ShapingError, match=r"bad\.csv:2"):
        ConditionTrace.load(tmp_path / "bad.csv")
