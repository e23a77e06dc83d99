"""Where road users start and how fast they go, chosen so that nobody drives through the
ego camera: vehicles ahead in the ego's lanes keep a gap for the whole clip, crossing traffic
and pedestrians are clear of the ego's path when it gets there."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from splitcast.data.scene.agents import Agent, AgentFactory
from splitcast.data.scene.layout import KERB_HEIGHT, RoadLayout, Side
from splitcast.data.scene.world import BUS, CAR, TRUCK


@dataclass(frozen=True)
class EgoPlan:
    """What the traffic must stay clear of."""

    x0: float
    speed: float
    duration: float
    turning: bool

    @property
    def reach(self) -> float:
        """How far along x the ego can get during the clip."""
        return self.x0 + self.speed * self.duration


def _vehicle_kind(rng: np.random.Generator) -> int:
    return int(rng.choice([CAR, TRUCK, BUS], p=[0.84, 0.1, 0.06]))


def populate(
    factory: AgentFactory,
    layout: RoadLayout,
    plan: EgoPlan,
    sides: list[Side],
    motion: float,
    rng: np.random.Generator,
) -> list[Agent]:
    agents: list[Agent] = []
    agents += _same_direction(factory, layout, plan, motion, rng)
    agents += _oncoming(factory, layout, plan, motion, rng)
    agents += _parked(factory, layout, plan, rng)
    if layout.junction_x is not None and not plan.turning:
        agents += _crossing(factory, layout, plan, motion, rng)
    agents += _pedestrians(factory, layout, plan, sides, motion, rng)
    agents += _cyclists(factory, layout, plan, motion, rng)
    return agents


def _same_direction(
    factory: AgentFactory,
    layout: RoadLayout,
    plan: EgoPlan,
    motion: float,
    rng: np.random.Generator,
) -> list[Agent]:
    agents = []
    for lane in range(layout.lanes):
        y = layout.ego_lane_y(lane)
        x = plan.x0 + float(rng.uniform(10, 30))
        while x < plan.x0 + 160:
            speed = plan.speed * float(rng.uniform(0.55, 1.05))
            min_start = plan.x0 + 9 + (plan.speed - speed) * plan.duration
            if x >= min_start and rng.random() < 0.6:
                agents.append(
                    factory.vehicle(
                        _vehicle_kind(rng), x, y + float(rng.uniform(-0.3, 0.3)), 0.0, speed
                    )
                )
            x += float(rng.uniform(12, 40))
    return agents


def _oncoming(
    factory: AgentFactory,
    layout: RoadLayout,
    plan: EgoPlan,
    motion: float,
    rng: np.random.Generator,
) -> list[Agent]:
    agents = []
    junction = layout.junction_x
    for lane in range(layout.lanes):
        y = (lane + 0.5) * layout.lane_width
        x = plan.x0 + float(rng.uniform(0, 25))
        while x < plan.x0 + 220:
            speed = float(rng.uniform(7, 14)) * motion
            agent_x = x
            x += float(rng.uniform(15, 45))
            if plan.turning and junction is not None:
                passes = [agent_x - speed * t for t in np.linspace(0, plan.duration, 12)]
                if any(abs(px - junction) < layout.cross_half_width + 8 for px in passes):
                    continue
            if rng.random() < 0.65:
                agents.append(
                    factory.vehicle(
                        _vehicle_kind(rng),
                        agent_x,
                        y + float(rng.uniform(-0.3, 0.3)),
                        math.pi,
                        speed,
                    )
                )
    return agents


def _parked(
    factory: AgentFactory, layout: RoadLayout, plan: EgoPlan, rng: np.random.Generator
) -> list[Agent]:
    if layout.parking <= 0:
        return []
    agents = []
    edge = layout.lanes * layout.lane_width + layout.parking / 2
    for y, heading in ((-edge, 0.0), (edge, math.pi)):
        x = plan.x0 - 10 + float(rng.uniform(0, 6))
        while x < plan.x0 + 160:
            near_junction = (
                layout.junction_x is not None
                and abs(x - layout.junction_x) < layout.cross_half_width + 9
            )
            if not near_junction and rng.random() < 0.6:
                agents.append(
                    factory.vehicle(CAR, x, y, heading + float(rng.uniform(-0.04, 0.04)), 0.0)
                )
            x += float(rng.uniform(5.5, 9.0))
    return agents


def _crossing(
    factory: AgentFactory,
    layout: RoadLayout,
    plan: EgoPlan,
    motion: float,
    rng: np.random.Generator,
) -> list[Agent]:
    """Vehicles on the crossing road, timed to be clear of the main road when the ego is in the
    junction."""
    junction = layout.junction_x
    assert junction is not None
    window = (junction - layout.cross_half_width - 4, junction + layout.cross_half_width + 4)
    times = [
        t
        for t in np.linspace(0, plan.duration, 24)
        if window[0] <= plan.x0 + plan.speed * t <= window[1]
    ]
    agents = []
    for _ in range(int(rng.poisson(2.5))):
        lane = int(rng.integers(layout.cross_lanes))
        direction = float(rng.choice([-1.0, 1.0]))
        x = junction - direction * (lane + 0.5) * layout.lane_width
        speed = float(rng.uniform(6, 12)) * motion
        y0 = float(rng.uniform(-90, 90))
        if any(abs(y0 + direction * speed * t) < layout.half_width + 4 for t in times):
            continue
        agents.append(factory.vehicle(_vehicle_kind(rng), x, y0, direction * math.pi / 2, speed))
    return agents


def _pedestrians(
    factory: AgentFactory,
    layout: RoadLayout,
    plan: EgoPlan,
    sides: list[Side],
    motion: float,
    rng: np.random.Generator,
) -> list[Agent]:
    agents = []
    for side in sides:
        for _ in range(int(rng.poisson(side.length / 25))):
            along = float(rng.uniform(0, side.length))
            x, y = side.at(along, float(rng.uniform(0.6, layout.sidewalk - 0.5)))
            if not (plan.x0 - 20 < x < plan.x0 + 170 and abs(y) < 170):
                continue
            heading = side.yaw + float(rng.choice([0.0, math.pi]))
            speed = float(rng.choice([0.0, rng.uniform(0.9, 1.8)], p=[0.15, 0.85])) * motion
            agents.append(factory.pedestrian(x, y, KERB_HEIGHT, heading, speed))
    if not plan.turning:
        for _ in range(int(rng.poisson(1.2))):
            x = plan.reach + float(rng.uniform(8, 45))
            y = float(rng.uniform(-layout.half_width, layout.half_width))
            heading = float(rng.choice([-math.pi / 2, math.pi / 2]))
            agents.append(
                factory.pedestrian(x, y, 0.02, heading, float(rng.uniform(1.1, 1.7)) * motion)
            )
    return agents


def _cyclists(
    factory: AgentFactory,
    layout: RoadLayout,
    plan: EgoPlan,
    motion: float,
    rng: np.random.Generator,
) -> list[Agent]:
    agents = []
    edge = layout.lanes * layout.lane_width - 0.8
    for _ in range(int(rng.poisson(1.0))):
        motor = bool(rng.random() < 0.35)
        speed = float(rng.uniform(8, 13) if motor else rng.uniform(3.5, 7)) * motion
        if rng.random() < 0.5:
            min_start = plan.x0 + 10 + max(0.0, plan.speed - speed) * plan.duration
            x = min_start + float(rng.uniform(0, 80))
            agents.append(factory.two_wheeler(motor, x, -edge, 0.0, speed))
        else:
            x = plan.x0 + float(rng.uniform(10, 150))
            agents.append(factory.two_wheeler(motor, x, edge, math.pi, speed))
    return agents
