"""The road network of one clip: its dimensions, the sidewalk edges things stand along, and the
colour draws every part of the scene shares."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from splitcast.data.scene.builder import Tint

MAIN_ROAD_X = (-60.0, 290.0)
CROSS_ROAD_Y = (-190.0, 190.0)
KERB_HEIGHT = 0.15

BUILDING_TINTS = (
    (0.95, 0.93, 0.88), (0.85, 0.75, 0.6), (0.75, 0.45, 0.35), (0.6, 0.6, 0.62), (0.55, 0.65, 0.8),
    (0.6, 0.75, 0.55), (0.9, 0.85, 0.55), (0.5, 0.4, 0.35), (0.8, 0.8, 0.85), (0.4, 0.42, 0.45),
)  # fmt: skip
VEHICLE_TINTS = (
    (0.95, 0.95, 0.95), (0.1, 0.1, 0.12), (0.65, 0.66, 0.7), (0.4, 0.4, 0.42), (0.7, 0.1, 0.1),
    (0.15, 0.25, 0.6), (0.2, 0.4, 0.25), (0.85, 0.75, 0.2), (0.45, 0.3, 0.2), (0.8, 0.75, 0.65),
)  # fmt: skip


def jitter(rng: np.random.Generator, tint: Tint, amount: float = 0.08) -> Tint:
    return tuple(float(np.clip(c + rng.uniform(-amount, amount), 0.03, 1.0)) for c in tint)  # type: ignore[return-value]


def pick(rng: np.random.Generator, options: tuple[Tint, ...]) -> Tint:
    return jitter(rng, options[int(rng.integers(len(options)))])


@dataclass(frozen=True)
class RoadLayout:
    """Dimensions of the road network of one clip."""

    lane_width: float
    lanes: int
    parking: float
    sidewalk: float
    junction_x: float | None
    cross_lanes: int

    @property
    def half_width(self) -> float:
        return self.lanes * self.lane_width + self.parking

    @property
    def cross_half_width(self) -> float:
        return self.cross_lanes * self.lane_width

    def ego_lane_y(self, lane: int) -> float:
        """Centre of the ego-direction lane `lane` (0 = next to the centre line)."""
        return -(lane + 0.5) * self.lane_width


@dataclass(frozen=True)
class Side:
    """A straight stretch of sidewalk edge: origin on the kerb, direction along it, outward
    normal (away from the road), and length."""

    origin: tuple[float, float]
    direction: tuple[float, float]
    normal: tuple[float, float]
    length: float

    def at(self, along: float, out: float) -> tuple[float, float]:
        return (
            self.origin[0] + self.direction[0] * along + self.normal[0] * out,
            self.origin[1] + self.direction[1] * along + self.normal[1] * out,
        )

    @property
    def yaw(self) -> float:
        return math.atan2(self.direction[1], self.direction[0])


def random_layout(rng: np.random.Generator, junction_x: float | None) -> RoadLayout:
    lanes = int(rng.choice([1, 2], p=[0.45, 0.55]))
    return RoadLayout(
        lane_width=float(rng.uniform(3.1, 3.7)),
        lanes=lanes,
        parking=float(rng.choice([0.0, 2.3], p=[0.6, 0.4])),
        sidewalk=float(rng.uniform(2.2, 5.0)),
        junction_x=junction_x,
        cross_lanes=int(rng.choice([1, 2])),
    )
