"""The ego car's path: straight driving, lane changes, and turns at a junction.

Coordinates: x along the main road, y to the left, z up; traffic keeps right, so the ego's
lanes have y < 0. A path is parametrised by arc length, so speed and path are independent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Line:
    x: float
    y: float
    heading: float
    length: float

    def pose(self, s: float) -> tuple[float, float, float]:
        return (
            self.x + s * math.cos(self.heading),
            self.y + s * math.sin(self.heading),
            self.heading,
        )


@dataclass(frozen=True)
class Arc:
    """A circular arc; `turn` is +1 for left (counter-clockwise) and -1 for right."""

    cx: float
    cy: float
    radius: float
    start_angle: float
    turn: int
    length: float

    def pose(self, s: float) -> tuple[float, float, float]:
        angle = self.start_angle + self.turn * s / self.radius
        x = self.cx + self.radius * math.cos(angle)
        y = self.cy + self.radius * math.sin(angle)
        return (x, y, angle + self.turn * math.pi / 2)


@dataclass(frozen=True)
class LaneChange:
    """Moves sideways by `offset` over `length` metres along x (smooth S-curve)."""

    x: float
    y: float
    offset: float
    length: float

    def pose(self, s: float) -> tuple[float, float, float]:
        u = min(max(s / self.length, 0.0), 1.0)
        y = self.y + self.offset * (3 * u**2 - 2 * u**3)
        slope = self.offset * 6 * u * (1 - u) / self.length
        return (self.x + s, y, math.atan(slope))


Segment = Line | Arc | LaneChange


class EgoPath:
    """Consecutive segments; beyond the end the last segment is extended straight."""

    def __init__(self, segments: list[Segment]) -> None:
        self.segments = segments

    def pose(self, s: float) -> tuple[float, float, float]:
        for segment in self.segments:
            if s <= segment.length:
                return segment.pose(max(s, 0.0))
            s -= segment.length
        x, y, heading = self.segments[-1].pose(self.segments[-1].length)
        return (x + s * math.cos(heading), y + s * math.sin(heading), heading)


def straight(x0: float, y: float, length: float = 1000.0) -> EgoPath:
    return EgoPath([Line(x0, y, 0.0, length)])


def lane_change(x0: float, y: float, start: float, offset: float, length: float) -> EgoPath:
    """Drive straight for `start` metres, then move `offset` metres sideways."""
    return EgoPath(
        [
            Line(x0, y, 0.0, start),
            LaneChange(x0 + start, y, offset, length),
            Line(x0 + start + length, y + offset, 0.0, 1000.0),
        ]
    )


def turn(x0: float, y: float, arc_start_x: float, radius: float, direction: int) -> EgoPath:
    """Straight along x to `arc_start_x`, then a quarter circle left (+1) or right (-1)."""
    centre_y = y + direction * radius
    arc = Arc(
        arc_start_x, centre_y, radius, -direction * math.pi / 2, direction, radius * math.pi / 2
    )
    end_x, end_y, heading = arc.pose(arc.length)
    return EgoPath([Line(x0, y, 0.0, arc_start_x - x0), arc, Line(end_x, end_y, heading, 1000.0)])
