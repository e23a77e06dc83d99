"""The static street: roads with markings, sidewalks, a junction, buildings, walls, fences,
vegetation, terrain, street lights, signs and traffic lights.

Everything is drawn from one random generator, so a seed gives the same street. The main road
runs along x; an optional crossing road runs along y at `junction_x`.
"""

from __future__ import annotations

import math

import numpy as np

from splitcast.data.scene import textures
from splitcast.data.scene.builder import SceneBuilder
from splitcast.data.scene.layout import (
    BUILDING_TINTS,
    CROSS_ROAD_Y,
    KERB_HEIGHT,
    MAIN_ROAD_X,
    RoadLayout,
    Side,
    jitter,
    pick,
)
from splitcast.data.scene.meshes import Mesh, blob, box, ground_quad, prism

ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN = range(8)
VEGETATION, TERRAIN, SKY, PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(8, 19)


class StreetBuilder:
    """Builds the static street of a layout into a `SceneBuilder`."""

    def __init__(self, scene: SceneBuilder, layout: RoadLayout, rng: np.random.Generator) -> None:
        self.scene = scene
        self.layout = layout
        self.rng = rng
        for name, make in (
            ("asphalt", textures.asphalt), ("pavers", textures.pavers), ("grass", textures.grass),
            ("foliage", textures.foliage), ("bricks", textures.bricks),
            ("facade0", textures.facade),
            ("facade1", textures.facade), ("facade2", textures.facade),
        ):  # fmt: skip
            scene.texture(name, make(rng))
        for index in range(3):
            scene.texture(f"sign{index}", textures.sign_plate(rng))
        scene.texture("lights", textures.traffic_light(rng))
        grey = rng.uniform(0.35, 0.6)
        self.road_tint = jitter(rng, (grey, grey, grey * rng.uniform(0.95, 1.08)), 0.03)
        self.sidewalk_tint = pick(
            rng, ((0.75, 0.75, 0.73), (0.7, 0.55, 0.5), (0.8, 0.72, 0.6), (0.55, 0.56, 0.6))
        )
        self.terrain_tint = pick(
            rng, ((0.35, 0.55, 0.2), (0.5, 0.6, 0.25), (0.65, 0.6, 0.35), (0.45, 0.38, 0.28))
        )
        self.vegetation_tints = (
            (0.2, 0.45, 0.15),
            (0.3, 0.5, 0.2),
            (0.15, 0.35, 0.18),
            (0.55, 0.5, 0.15),
        )
        self.pole_tint = pick(
            rng, ((0.45, 0.45, 0.47), (0.15, 0.2, 0.15), (0.1, 0.1, 0.1), (0.6, 0.6, 0.58))
        )

    def build(self) -> list[Side]:
        """Build everything; returns the sidewalk sides (where pedestrians can walk)."""
        self._ground()
        self._roads()
        sides = self._sidewalks()
        for side in sides:
            self._roadside(side)
        if self.layout.junction_x is not None:
            self._traffic_lights()
        return sides

    def _ground(self) -> None:
        x0, x1 = MAIN_ROAD_X
        mesh = ground_quad(x0 - 40, x1 + 60, CROSS_ROAD_Y[0], CROSS_ROAD_Y[1], 0.0, 4.0, cell=30.0)
        self.scene.add(mesh, TERRAIN, (0, 0, 0), tint=self.terrain_tint, texture="grass")

    def _roads(self) -> None:
        layout = self.layout
        hw = layout.half_width
        road = ground_quad(*MAIN_ROAD_X, -hw, hw, 0.0, 6.0)
        if layout.junction_x is not None:
            jx, chw = layout.junction_x, layout.cross_half_width
            road.extend(ground_quad(jx - chw, jx + chw, CROSS_ROAD_Y[0], -hw, 0.0, 6.0))
            road.extend(ground_quad(jx - chw, jx + chw, hw, CROSS_ROAD_Y[1], 0.0, 6.0))
        self.scene.add(road, ROAD, (0, 0, 0.02), tint=self.road_tint, texture="asphalt")
        self.scene.add(
            self._markings(), ROAD, (0, 0, 0.03), tint=jitter(self.rng, (0.92, 0.92, 0.9), 0.04)
        )

    def _markings(self) -> Mesh:
        """Dashed lane lines, a centre line, edge lines and zebra crossings, as one mesh."""
        layout, rng = self.layout, self.rng
        mesh = Mesh()
        dash, gap = rng.uniform(2.5, 4.0), rng.uniform(4.0, 8.0)
        gaps = self._junction_gaps()
        lines = [0.0]
        lines += [sign * k * layout.lane_width for k in range(1, layout.lanes) for sign in (-1, 1)]
        for y in lines:
            solid = y == 0.0 and rng.random() < 0.4
            x = MAIN_ROAD_X[0]
            while x < MAIN_ROAD_X[1]:
                length = 6.0 if solid else dash
                if not any(a < x + length and x < b for a, b in gaps):
                    mesh.extend(box((length, 0.15, 0.01), (x + length / 2, y, 0.0)))
                x += length if solid else dash + gap
        edge = layout.lanes * layout.lane_width
        for y in (-edge, edge):
            for a, b in self._complement(gaps):
                mesh.extend(box((b - a, 0.12, 0.01), ((a + b) / 2, y, 0.0)))
        if layout.junction_x is not None:
            jx, chw, hw = layout.junction_x, layout.cross_half_width, layout.half_width
            for x_edge in (jx - chw - 2.0, jx + chw + 2.0):
                for k in np.arange(-hw + 0.5, hw, 1.0):
                    mesh.extend(box((3.0, 0.5, 0.01), (x_edge, k, 0.0)))
        return mesh

    def _junction_gaps(self) -> list[tuple[float, float]]:
        if self.layout.junction_x is None:
            return []
        jx, chw = self.layout.junction_x, self.layout.cross_half_width
        return [(jx - chw - 4.0, jx + chw + 4.0)]

    @staticmethod
    def _complement(gaps: list[tuple[float, float]]) -> list[tuple[float, float]]:
        spans, start = [], MAIN_ROAD_X[0]
        for a, b in gaps:
            spans.append((start, a))
            start = b
        spans.append((start, MAIN_ROAD_X[1]))
        return spans

    def _sidewalks(self) -> list[Side]:
        layout = self.layout
        hw, sw = layout.half_width, layout.sidewalk
        sides: list[Side] = []
        spans = [MAIN_ROAD_X]
        if layout.junction_x is not None:
            jx, chw = layout.junction_x, layout.cross_half_width
            spans = [(MAIN_ROAD_X[0], jx - chw), (jx + chw, MAIN_ROAD_X[1])]
            for x_kerb, sign in ((jx - chw, -1.0), (jx + chw, 1.0)):
                for y0, y1 in ((CROSS_ROAD_Y[0], -hw - sw), (hw + sw, CROSS_ROAD_Y[1])):
                    sides.append(Side((x_kerb, y0), (0.0, 1.0), (sign, 0.0), y1 - y0))
        for x0, x1 in spans:
            sides.append(Side((x0, hw), (1.0, 0.0), (0.0, 1.0), x1 - x0))
            sides.append(Side((x0, -hw), (1.0, 0.0), (0.0, -1.0), x1 - x0))
        mesh = Mesh()
        for side in sides:
            cx, cy = side.at(side.length / 2, sw / 2)
            size = (
                (side.length, sw, KERB_HEIGHT)
                if side.direction[0]
                else (sw, side.length, KERB_HEIGHT)
            )
            mesh.extend(box(size, (cx, cy, KERB_HEIGHT / 2), tile=3.0))
        self.scene.add(mesh, SIDEWALK, (0, 0, 0), tint=self.sidewalk_tint, texture="pavers")
        return sides

    def _roadside(self, side: Side) -> None:
        """Buildings with gaps (walls, fences, hedges, grass) behind the sidewalk; trees,
        street lights and signs along the kerb."""
        rng, sw = self.rng, self.layout.sidewalk
        setback = float(rng.choice([0.0, rng.uniform(1.5, 6.0)], p=[0.6, 0.4]))
        if setback > 0:
            strip = Mesh().extend(
                self._oriented_box(
                    side, side.length / 2, sw + setback / 2, (side.length, setback, 0.05)
                )
            )
            self.scene.add(
                strip, TERRAIN, (0, 0, 0.0), tint=jitter(rng, self.terrain_tint), texture="grass"
            )
        along = float(rng.uniform(-5, 5))
        while along < side.length:
            width = float(rng.uniform(8, 28))
            if rng.random() < 0.78:
                self._building(side, along, width, sw + setback)
            else:
                self._gap_filler(side, along, width, sw + setback)
            along += width + float(rng.choice([0.0, rng.uniform(1, 6)], p=[0.6, 0.4]))
        self._kerbside(side)

    def _oriented_box(
        self, side: Side, along: float, out: float, size: tuple[float, float, float], z: float = 0.0
    ) -> Mesh:
        """A box whose first size axis runs along the side, second outward, centred there."""
        cx, cy = side.at(along, out)
        length, depth, height = size
        dims = (length, depth, height) if side.direction[0] else (depth, length, height)
        return box(dims, (cx, cy, z + height / 2))

    def _building(self, side: Side, along: float, width: float, out: float) -> None:
        rng = self.rng
        depth, height = float(rng.uniform(8, 16)), float(rng.uniform(6, 32))
        start, end = max(along, 0.0), min(along + width, side.length)
        if end - start < 3:
            return
        cx, cy = side.at((start + end) / 2, out + depth / 2)
        dims = (end - start, depth, height) if side.direction[0] else (depth, end - start, height)
        mesh = box(dims, (cx, cy, height / 2), tile=float(rng.uniform(5.5, 8.0)))
        facade = f"facade{int(rng.integers(3))}"
        self.scene.add(mesh, BUILDING, (0, 0, 0), tint=pick(rng, BUILDING_TINTS), texture=facade)

    def _gap_filler(self, side: Side, along: float, width: float, out: float) -> None:
        rng = self.rng
        start, end = max(along, 0.0), min(along + width, side.length)
        if end - start < 2:
            return
        middle, length = (start + end) / 2, end - start
        kind = int(rng.integers(4))
        if kind == 0:
            height = float(rng.uniform(1.2, 3.0))
            mesh = self._oriented_box(side, middle, out + 0.2, (length, 0.3, height))
            self.scene.add(mesh, WALL, (0, 0, 0), tint=pick(rng, BUILDING_TINTS), texture="bricks")
        elif kind == 1:
            self.scene.add(
                self._fence(side, start, end, out + 0.1),
                FENCE,
                (0, 0, 0),
                tint=pick(
                    rng, ((0.4, 0.4, 0.4), (0.45, 0.33, 0.2), (0.2, 0.35, 0.2), (0.1, 0.1, 0.1))
                ),
            )
        elif kind == 2:
            mesh = self._oriented_box(
                side, middle, out + 0.8, (length, 1.6, float(rng.uniform(0.8, 2.2)))
            )
            self.scene.add(
                mesh,
                VEGETATION,
                (0, 0, 0),
                tint=pick(rng, self.vegetation_tints),
                texture="foliage",
            )
        for _ in range(int(rng.integers(0, 3))):
            self._tree(side, float(rng.uniform(start, end)), out + float(rng.uniform(2, 8)))
        depth = float(rng.uniform(4, 10))
        lawn = self._oriented_box(side, middle, out + depth / 2, (length, depth, 0.04))
        self.scene.add(
            lawn, TERRAIN, (0, 0, 0), tint=jitter(rng, self.terrain_tint), texture="grass"
        )

    def _fence(self, side: Side, start: float, end: float, out: float) -> Mesh:
        height = float(self.rng.uniform(1.0, 2.0))
        mesh = Mesh()
        for rail_z in (0.25 * height, 0.9 * height):
            mesh.extend(
                self._oriented_box(
                    side, (start + end) / 2, out, (end - start, 0.06, 0.08), z=rail_z
                )
            )
        for post in np.arange(start, end, float(self.rng.uniform(0.15, 0.4))):
            mesh.extend(self._oriented_box(side, float(post), out, (0.05, 0.05, height)))
        return mesh

    def _tree(self, side: Side, along: float, out: float) -> None:
        rng = self.rng
        x, y = side.at(along, out)
        height = float(rng.uniform(3.5, 9.0))
        radius = float(rng.uniform(1.2, 3.2))
        mesh = prism(0.15 + 0.03 * height, height * 0.7, sides=5, center=(x, y, 0.0))
        for _ in range(int(rng.integers(1, 4))):
            offset = rng.uniform(-0.5, 0.5, 3) * radius
            mesh.extend(
                blob(
                    radius * rng.uniform(0.7, 1.0),
                    (x + offset[0], y + offset[1], height * 0.75 + offset[2]),
                    rng,
                    squash=0.8,
                    roughness=0.25,
                )
            )
        self.scene.add(
            mesh, VEGETATION, (0, 0, 0), tint=pick(rng, self.vegetation_tints), texture="foliage"
        )

    def _kerbside(self, side: Side) -> None:
        """Trees, street lights and signs at a fixed distance from the kerb."""
        rng = self.rng
        tree_spacing = float(rng.choice([0.0, rng.uniform(8, 18)], p=[0.35, 0.65]))
        if tree_spacing:
            for along in np.arange(rng.uniform(0, tree_spacing), side.length, tree_spacing):
                self._tree(side, float(along), 0.9)
        light_spacing = float(rng.uniform(18, 35))
        for along in np.arange(rng.uniform(0, light_spacing), side.length, light_spacing):
            self._street_light(side, float(along))
        along = float(rng.uniform(0, 30))
        while along < side.length:
            self._sign(side, along)
            along += float(rng.uniform(15, 60))

    def _street_light(self, side: Side, along: float) -> None:
        rng = self.rng
        x, y = side.at(along, 0.5)
        height = float(rng.uniform(5.5, 9.0))
        mesh = prism(0.09, height, sides=6, center=(x, y, 0.0))
        arm = float(rng.uniform(0.8, 2.0))
        ax, ay = side.at(along, 0.5 - arm / 2)
        dims = (0.1, arm, 0.1) if side.direction[0] else (arm, 0.1, 0.1)
        mesh.extend(box(dims, (ax, ay, height)))
        lx, ly = side.at(along, 0.5 - arm)
        mesh.extend(box((0.5, 0.3, 0.15), (lx, ly, height - 0.1)))
        self.scene.add(mesh, POLE, (0, 0, 0), tint=self.pole_tint)

    def _sign(self, side: Side, along: float) -> None:
        rng = self.rng
        x, y = side.at(along, 0.4)
        height = float(rng.uniform(2.0, 3.0))
        self.scene.add(
            prism(0.04, height, sides=5, center=(x, y, 0.0)), POLE, (0, 0, 0), tint=self.pole_tint
        )
        size = float(rng.uniform(0.5, 0.9))
        plate = box((0.04, size, size), (0.0, 0.0, 0.0))
        facing = side.yaw + math.pi + float(rng.uniform(-0.2, 0.2))
        self.scene.add(
            plate,
            TRAFFIC_SIGN,
            (x, y, height + size / 2),
            yaw=facing,
            texture=f"sign{int(rng.integers(3))}",
        )

    def _traffic_lights(self) -> None:
        layout, rng = self.layout, self.rng
        jx, chw, hw = layout.junction_x, layout.cross_half_width, layout.half_width
        assert jx is not None
        corners = (
            (jx - chw - 1.0, -hw - 1.0, 0.0),
            (jx + chw + 1.0, hw + 1.0, math.pi),
            (jx - chw - 1.0, hw + 1.0, -math.pi / 2),
            (jx + chw + 1.0, -hw - 1.0, math.pi / 2),
        )
        for x, y, facing in corners:
            height = float(rng.uniform(2.8, 4.0))
            self.scene.add(
                prism(0.08, height + 0.3, sides=6, center=(x, y, 0.0)),
                POLE,
                (0, 0, 0),
                tint=self.pole_tint,
            )
            housing = box((0.3, 0.35, 0.95), (0.0, 0.0, 0.0))
            self.scene.add(
                housing,
                TRAFFIC_LIGHT,
                (x, y, height + 0.75),
                yaw=facing + math.pi / 2,
                tint=(1.0, 1.0, 1.0),
                texture="lights",
            )
