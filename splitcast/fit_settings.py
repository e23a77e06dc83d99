"""What `splitcast fit` does (`FitRequest`) and its defaults, without the heavy imports of
doing it (`splitcast.fit`), so the command line can show them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from splitcast.models.answers import DEFAULT_HORIZON_TICKS

LARGE_DATA_CLIPS = 60
"""From this many training clips on, the fit runs every stage of the shipped default's recipe
(the default trained on 120); below it only the first, as later stages fit the remote to the
training scenes and few clips are too few for that."""
COMBINERS = ("feature_fusion", "late_average")
LATE_WEIGHTS = (0.2, 0.35, 0.5, 0.65)
LATE_BLURS = (1, 5, 9)
LATE_MOVED_WEIGHTS = (0.0, 0.3)


@dataclass
class FitRequest:
    """What `splitcast fit` does; every field but how it runs (progress, device, precision)
    must match to resume a fit."""

    data: Path
    out: Path
    config: str = "lite"
    seed: int = 0
    calib_fraction: float = 0.2
    test_fraction: float = 0.2
    calib_data: Path | None = None
    test_data: Path | None = None
    """Calibration and test clips in folders of their own (both or neither): `data` is then
    all training clips and nothing is split."""
    time_budget_min: float | None = None
    """Minutes of training steps over all stages (None: the recipe's epochs)."""
    delays: tuple[float, float] = (0.0, float(DEFAULT_HORIZON_TICKS))
    """Answer ages trained, calibrated and reported; the top is the checkpoint's horizon."""
    batch_size: int = 8
    workers: int = 2
    max_steps: int | None = None
    every: int = 2
    """Calibration scores every N-th target frame of the calibration clips."""
    confidence: float = 0.9
    late_weights: tuple[float, ...] = LATE_WEIGHTS
    late_blurs: tuple[int, ...] = LATE_BLURS
    late_moved_weights: tuple[float, ...] = LATE_MOVED_WEIGHTS
    progress: bool = field(default=True, compare=False)
    device: str = field(default="auto", compare=False)
    """Where every step runs, and in what precision (`splitcast.models.devices`); a fit may
    resume on another device."""
    precision: str | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        for name in ("progress", "device", "precision"):
            record.pop(name)
        return json.loads(json.dumps(record, default=str))
