"""The D_i policy: which delay the edge asks the server to condition its answers on.

The edge sees the true delay D_o of each new answer when it first uses it. It asks
for a high quantile of the recent D_o values, rounded up to whole ticks, because
over-estimating the delay costs less accuracy than under-estimating it. For the same reason
the edge starts, before any answer has returned, from the worst delay it still uses.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np


class DelayPolicy:
    """Rolling-quantile estimate of the delay (in ticks of the model's frame rate)."""

    def __init__(
        self,
        initial_ticks: float = 0.0,
        quantile: float = 0.9,
        window: int = 30,
        margin_ticks: float = 0.0,
        max_ticks: float = 60.0,
    ) -> None:
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {quantile}")
        self.initial_ticks = initial_ticks
        self.quantile = quantile
        self.margin_ticks = margin_ticks
        self.max_ticks = max_ticks
        self._observed: deque[float] = deque(maxlen=window)

    def observe(self, delay_ticks: float) -> None:
        """Record the true delay D_o of features at their first use."""
        self._observed.append(delay_ticks)

    def requested(self) -> float:
        """The D_i to put on the next uplink frame."""
        if not self._observed:
            estimate = self.initial_ticks
        else:
            estimate = float(np.quantile(np.fromiter(self._observed, float), self.quantile))
        return float(min(self.max_ticks, math.ceil(estimate + self.margin_ticks - 1e-6)))
