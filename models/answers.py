"""What an answer is, without PyTorch: the named tensors that travel and how the edge uses an
answer of a given age (the per-age records calibration writes). Shared by the combiners, the
wire contract, the edge and the exported graphs' manifest, so the edge-only install reads the
same records the training stack writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_HORIZON_TICKS = 30
"""The answer horizon of new configurations: one second at 30 fps, an age that a slow server or
a long link reaches and where a forecast still helps (see `ModelConfig.horizon_ticks`)."""


@dataclass(frozen=True)
class AnswerUse:
    """How the edge uses an answer of one age: the feature gain or the forecast's weight, and
    (late average only) the side of the box the forecast is blurred over and the weight of the
    on-time answer moved to the current frame."""

    weight: float
    blur: int = 1
    warped_weight: float = 0.0


AS_SENT = AnswerUse(1.0)
"""The answer used as it arrives: gain (or weight) 1, no blur."""
LOCAL_ONLY = AnswerUse(0.0)
"""The answer not used at all: every combiner's output is then exactly local-only."""


def use_at(policy: Sequence[AnswerUse], age_ticks: float) -> AnswerUse:
    """`policy[age]` for the age rounded to whole ticks, the last record for anything older;
    `AS_SENT` without a policy."""
    if not policy:
        return AS_SENT
    return policy[min(max(int(age_ticks + 0.5), 0), len(policy) - 1)]


@dataclass(frozen=True)
class WireTensor:
    """One named tensor of an answer as it travels: shape [C, H, W] (no batch axis) and codec."""

    name: str
    shape: tuple[int, int, int]
    codec: str


def check_uses(uses: Sequence[AnswerUse]) -> None:
    """Raise ValueError unless every weight is in [0, 4] and every blur an odd box side."""
    weights = [(u.weight, u.warped_weight) for u in uses]
    if not uses or any(not 0.0 <= w <= 4.0 for pair in weights for w in pair):
        raise ValueError(f"answer weights must be a non-empty list in [0, 4]: {weights}")
    wrong = sorted({u.blur for u in uses if u.blur < 1 or u.blur % 2 == 0})
    if wrong:
        raise ValueError(f"the forecast's blur must be an odd number of cells, not {wrong}")
