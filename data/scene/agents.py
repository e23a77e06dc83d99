"""Moving and parked road users: cars, trucks, buses, cyclists, motorcyclists, pedestrians.

Each agent owns one or more bodies and a straight trajectory; `place(t)` puts its bodies where
they are `t` seconds into the clip. Pedestrians swing their legs at a cadence that follows
their speed, so they move like walkers rather than sliding boxes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from splitcast.data.scene import textures
from splitcast.data.scene.builder import SceneBuilder
from splitcast.data.scene.layout import VEHICLE_TINTS, pick
from splitcast.data.scene.meshes import Mesh, blob, box
from splitcast.data.scene.world import BICYCLE, BUS, CAR, MOTORCYCLE, PERSON, RIDER, TRUCK

SKIN_TINTS = ((0.95, 0.8, 0.7), (0.8, 0.6, 0.45), (0.55, 0.38, 0.28), (0.35, 0.24, 0.18))
CLOTH_TINTS = (
    (0.1, 0.1, 0.12), (0.2, 0.25, 0.5), (0.7, 0.1, 0.1), (0.85, 0.85, 0.85), (0.3, 0.45, 0.3),
    (0.55, 0.45, 0.3), (0.9, 0.7, 0.2), (0.4, 0.4, 0.42), (0.5, 0.2, 0.5),
)  # fmt: skip


@dataclass
class Agent:
    """Bodies moving together along a straight line (speed 0 = parked or standing)."""

    bodies: list[int]
    x: float
    y: float
    z: float
    heading: float
    speed: float
    legs: list[tuple[int, float]] = field(default_factory=list)
    stride: float = 1.4
    scale: float = 1.0

    def position(self, t: float) -> tuple[float, float]:
        return (
            self.x + self.speed * t * math.cos(self.heading),
            self.y + self.speed * t * math.sin(self.heading),
        )

    def place(self, scene: SceneBuilder, t: float) -> None:
        x, y = self.position(t)
        for body in self.bodies:
            scene.move(body, (x, y, self.z), self.heading)
        phase = 2 * math.pi * self.speed * t / self.stride
        for body, side in self.legs:
            swing = 0.45 * side * math.sin(phase)
            scene.move(body, (x, y, self.z + 0.85 * self.scale), self.heading, swing)


def car_mesh(rng: np.random.Generator, kind: int) -> Mesh:
    """A car, truck or bus built from boxes; x forward, origin on the ground at its centre."""
    if kind == TRUCK:
        length, width, height = rng.uniform(6.5, 9.0), rng.uniform(2.2, 2.5), rng.uniform(2.8, 3.6)
    elif kind == BUS:
        length, width, height = rng.uniform(10.0, 12.5), 2.5, rng.uniform(2.9, 3.3)
    else:
        length, width, height = (
            rng.uniform(3.7, 4.9),
            rng.uniform(1.65, 1.9),
            rng.uniform(1.35, 1.7),
        )
    clearance, wheel = 0.25, 0.65 if kind == CAR else 0.95
    mesh = Mesh()
    for wx in (-0.32 * length, 0.32 * length):
        for wy in (-width / 2 + 0.2, width / 2 - 0.2):
            mesh.extend(box((wheel, 0.28, wheel), (wx, wy, wheel / 2), uv_rect=textures.CAR_TYRE))
    if kind == CAR:
        lower = 0.55 * height
        mesh.extend(
            box(
                (length, width, lower - clearance),
                (0, 0, (lower + clearance) / 2),
                uv_rect=textures.CAR_BODY,
            )
        )
        cabin = length * rng.uniform(0.45, 0.6)
        mesh.extend(
            box(
                (cabin, width * 0.86, height - lower),
                (-0.08 * length, 0, (height + lower) / 2),
                uv_rect=textures.CAR_GLASS,
            )
        )
    elif kind == TRUCK:
        cab = 1.9
        mesh.extend(
            box(
                (cab, width, height * 0.8 - clearance),
                (length / 2 - cab / 2, 0, (height * 0.8 + clearance) / 2),
                uv_rect=textures.CAR_BODY,
            )
        )
        mesh.extend(
            box(
                (0.1, width * 0.8, 0.7),
                (length / 2 + 0.01, 0, height * 0.65),
                uv_rect=textures.CAR_GLASS,
            )
        )
        mesh.extend(
            box(
                (length - cab - 0.3, width, height - 0.6),
                (-cab / 2 - 0.15, 0, (height + 0.6) / 2),
                uv_rect=textures.CAR_BODY,
            )
        )
    else:
        mesh.extend(
            box(
                (length, width, height - clearance),
                (0, 0, (height + clearance) / 2),
                uv_rect=textures.CAR_BODY,
            )
        )
        mesh.extend(
            box(
                (length * 0.96, width + 0.02, 0.8),
                (0, 0, height * 0.68),
                uv_rect=textures.CAR_GLASS,
            )
        )
    for ly in (-width / 2 + 0.3, width / 2 - 0.3):
        mesh.extend(box((0.06, 0.3, 0.15), (length / 2, ly, 0.7), uv_rect=textures.CAR_LIGHTS))
    return mesh


class AgentFactory:
    """Creates agents' bodies in a scene."""

    def __init__(self, scene: SceneBuilder, rng: np.random.Generator) -> None:
        self.scene = scene
        self.rng = rng
        scene.texture("car", textures.car_atlas(rng))

    def vehicle(self, kind: int, x: float, y: float, heading: float, speed: float) -> Agent:
        mesh = car_mesh(self.rng, kind)
        tint = pick(self.rng, VEHICLE_TINTS)
        body = self.scene.add(mesh, kind, (x, y, 0.02), heading, tint, texture="car")
        return Agent([body], x, y, 0.02, heading, speed)

    def two_wheeler(self, motor: bool, x: float, y: float, heading: float, speed: float) -> Agent:
        rng = self.rng
        frame = Mesh()
        radius = 0.33 if not motor else 0.32
        for wx in (-0.55, 0.55):
            frame.extend(
                box(
                    (2 * radius, 0.06 if not motor else 0.12, 2 * radius),
                    (wx, 0, radius),
                    uv_rect=textures.CAR_TYRE,
                )
            )
        if motor:
            frame.extend(box((1.2, 0.35, 0.4), (0.0, 0, 0.65), uv_rect=textures.CAR_BODY))
        else:
            frame.extend(box((1.1, 0.05, 0.05), (0.0, 0, 0.6), uv_rect=textures.CAR_BODY))
            frame.extend(box((0.05, 0.05, 0.45), (-0.2, 0, 0.75), uv_rect=textures.CAR_BODY))
            frame.extend(box((0.05, 0.5, 0.05), (0.5, 0, 1.0), uv_rect=textures.CAR_TYRE))
        vehicle = self.scene.add(
            frame,
            MOTORCYCLE if motor else BICYCLE,
            (x, y, 0.02),
            heading,
            pick(rng, VEHICLE_TINTS),
            texture="car",
        )
        rider = Mesh()
        rider.extend(box((0.3, 0.4, 0.6), (-0.15, 0, 1.25)))
        rider.extend(blob(0.13, (-0.05, 0, 1.68), rng, roughness=0.05))
        for ly in (-0.12, 0.12):
            rider.extend(box((0.35, 0.12, 0.12), (0.0, ly, 0.95)))
            rider.extend(box((0.12, 0.12, 0.45), (0.15, ly, 0.7)))
        person = self.scene.add(rider, RIDER, (x, y, 0.02), heading, pick(rng, CLOTH_TINTS))
        return Agent([vehicle, person], x, y, 0.02, heading, speed)

    def pedestrian(self, x: float, y: float, z: float, heading: float, speed: float) -> Agent:
        rng = self.rng
        scale = float(rng.uniform(0.75, 1.08))
        torso = Mesh()
        torso.extend(box((0.24 * scale, 0.42 * scale, 0.62 * scale), (0, 0, 1.16 * scale)))
        for ay in (-0.27, 0.27):
            torso.extend(
                box((0.1 * scale, 0.09 * scale, 0.6 * scale), (0, ay * scale, 1.15 * scale))
            )
        head = blob(0.115 * scale, (0, 0, 1.6 * scale), rng, squash=1.15, roughness=0.05)
        upper = self.scene.add(torso, PERSON, (x, y, z), heading, pick(rng, CLOTH_TINTS))
        skull = self.scene.add(head, PERSON, (x, y, z), heading, pick(rng, SKIN_TINTS))
        trousers = pick(rng, CLOTH_TINTS)
        legs = []
        for side, ly in ((1.0, -0.1), (-1.0, 0.1)):
            leg = box((0.15 * scale, 0.14 * scale, 0.85 * scale), (0, ly * scale, -0.425 * scale))
            legs.append(
                (self.scene.add(leg, PERSON, (x, y, z + 0.85 * scale), heading, trousers), side)
            )
        return Agent([upper, skull], x, y, z, heading, speed, legs, 1.3 * scale, scale)
