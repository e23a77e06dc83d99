"""Renders synthetic driving clips with exact per-pixel labels (pybullet's software renderer).

`render_clip(seed, settings, num_frames)` yields (rgb, label) pairs. Everything about a clip
(street, traffic, ego manoeuvre, camera, light, sky, sensor noise) comes from its seed, so the
same seed and settings give the same pixels. Labels are Cityscapes trainIds; every pixel is
labelled (nothing is ignored): the background is sky.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from splitcast.data.scene import ego as ego_paths
from splitcast.data.scene.agents import AgentFactory
from splitcast.data.scene.builder import SceneBuilder
from splitcast.data.scene.bullet import direct_client, pybullet
from splitcast.data.scene.layout import RoadLayout, random_layout
from splitcast.data.scene.textures import smooth_noise
from splitcast.data.scene.traffic import EgoPlan, populate
from splitcast.data.scene.world import SKY, StreetBuilder

GENERATOR_VERSION = "1.0.0"
NEAR, FAR = 0.2, 400.0

# Classes the generator draws (trainIds). `train` (16) never occurs.
OCCURRING_CLASSES = tuple(c for c in range(19) if c != 16)


@dataclass(frozen=True)
class SceneSettings:
    """Rendering settings shared by every clip of a split."""

    height: int = 256
    width: int | None = None
    fps: float = 30.0
    motion: float = 1.0
    shadows: bool = False

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width or 2 * self.height)

    def to_dict(self) -> dict:
        return {**asdict(self), "width": self.size[1], "version": GENERATOR_VERSION}


@dataclass(frozen=True)
class ClipPlan:
    """The random choices that make one clip what it is (recorded in the clip's metadata)."""

    manoeuvre: str
    ego_speed: float
    junction_x: float | None
    camera_height: float
    camera_pitch_deg: float
    fov_deg: float
    sun_azimuth_deg: float
    sun_elevation_deg: float
    sky: str
    visibility_m: float
    blur_sigma: float
    noise_sigma: float


SKIES = {
    "clear": ((0.25, 0.45, 0.8), (0.7, 0.8, 0.92)),
    "overcast": ((0.55, 0.57, 0.6), (0.78, 0.79, 0.8)),
    "dusk": ((0.15, 0.2, 0.45), (0.95, 0.65, 0.4)),
    "haze": ((0.5, 0.6, 0.75), (0.85, 0.85, 0.82)),
}


def _plan(
    rng: np.random.Generator, settings: SceneSettings, duration: float
) -> tuple[ClipPlan, ego_paths.EgoPath, EgoPlan, RoadLayout]:
    manoeuvre = str(
        rng.choice(["straight", "lane_change", "turn_left", "turn_right"], p=[0.55, 0.25, 0.1, 0.1])
    )
    turning = manoeuvre.startswith("turn")
    speed = float(rng.uniform(8.0, 15.0)) * settings.motion
    x0 = 0.0
    junction = None
    if turning:
        junction = 60.0
    elif rng.random() < 0.6:
        junction = x0 + float(rng.uniform(12.0, 110.0))
    layout = random_layout(rng, junction)
    if manoeuvre == "lane_change" and layout.lanes < 2:
        manoeuvre = "straight"
    if manoeuvre == "straight":
        lane = int(rng.integers(layout.lanes))
        path = ego_paths.straight(x0, layout.ego_lane_y(lane) + float(rng.uniform(-0.3, 0.3)))
    elif manoeuvre == "lane_change":
        lane = int(rng.integers(2))
        offset = layout.ego_lane_y(1 - lane) - layout.ego_lane_y(lane)
        start = speed * duration * float(rng.uniform(0.0, 0.4))
        length = float(rng.uniform(25, 45)) * settings.motion
        path = ego_paths.lane_change(x0, layout.ego_lane_y(lane), start, offset, length)
    else:
        assert junction is not None
        left = manoeuvre == "turn_left"
        lane = 0 if left else layout.lanes - 1
        y = layout.ego_lane_y(lane)
        lw = layout.lane_width
        radius = layout.half_width - y if left else 0.5 * lw + 2.5
        # Cars turn at the speed a comfortable lateral acceleration allows (2-3.5 m/s^2).
        speed = math.sqrt(float(rng.uniform(2.0, 3.5)) * radius) * settings.motion
        arc_start = junction + (lw / 2 if left else -lw / 2) - radius
        start = arc_start - speed * duration * float(rng.uniform(0.05, 0.45))
        path = ego_paths.turn(start, y, arc_start, radius, 1 if left else -1)
    start_x = path.pose(0.0)[0]
    sky = str(rng.choice(list(SKIES), p=[0.45, 0.25, 0.15, 0.15]))
    plan = ClipPlan(
        manoeuvre=manoeuvre,
        ego_speed=speed,
        junction_x=junction,
        camera_height=float(rng.uniform(1.2, 1.65)),
        camera_pitch_deg=float(rng.uniform(-5.0, -1.0)),
        fov_deg=float(rng.uniform(30.0, 36.0)),
        sun_azimuth_deg=float(rng.uniform(0, 360)),
        sun_elevation_deg=float(rng.uniform(12, 70)),
        sky=sky,
        visibility_m=float(rng.uniform(150, 700) if sky != "haze" else rng.uniform(60, 150)),
        blur_sigma=float(rng.uniform(0.0, 0.8)),
        noise_sigma=float(rng.uniform(0.0, 3.5)),
    )
    return plan, path, EgoPlan(start_x, speed, duration, turning), layout


class SceneRenderer:
    """One pybullet world per clip; renders camera frames and their labels."""

    def __init__(self, settings: SceneSettings) -> None:
        self.settings = settings
        self.client = direct_client()
        self._texture_dir = tempfile.TemporaryDirectory(prefix="splitcast-textures-")

    def close(self) -> None:
        self.client.disconnect()
        self._texture_dir.cleanup()

    def __enter__(self) -> SceneRenderer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def clip(
        self, seed: int, num_frames: int
    ) -> tuple[ClipPlan, Iterator[tuple[np.ndarray, np.ndarray]]]:
        """Build the world of clip `seed`; returns its plan and an iterator over its frames."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5C3]))
        duration = num_frames / self.settings.fps
        self.client.resetSimulation()
        scene = SceneBuilder(self.client, Path(self._texture_dir.name))
        plan, path, ego_plan, layout = _plan(rng, self.settings, duration)
        sides = StreetBuilder(scene, layout, rng).build()
        agents = populate(
            AgentFactory(scene, rng), layout, ego_plan, sides, self.settings.motion, rng
        )
        lookup = scene.class_lookup(background=SKY)
        shake = rng.uniform(0, 2 * math.pi, 3)
        look = _Look(plan, rng, self.settings.size)

        def frames() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for index in range(num_frames):
                t = index / self.settings.fps
                for agent in agents:
                    agent.place(scene, t)
                x, y, heading = path.pose(plan.ego_speed * t)
                pitch = math.radians(plan.camera_pitch_deg + 0.2 * math.sin(11.0 * t + shake[0]))
                roll = math.radians(0.2 * math.sin(7.0 * t + shake[1]))
                height = plan.camera_height + 0.02 * math.sin(13.0 * t + shake[2])
                rgb, seg, depth = self._render((x, y, height), heading, pitch, roll, plan)
                label = lookup[seg + 1]
                frame_rng = np.random.default_rng(np.random.SeedSequence([seed, index, 0xF7]))
                yield look.apply(rgb, label, depth, frame_rng), label

        return plan, frames()

    def _render(
        self,
        eye: tuple[float, float, float],
        heading: float,
        pitch: float,
        roll: float,
        plan: ClipPlan,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        height, width = self.settings.size
        forward = np.array(
            [
                math.cos(heading) * math.cos(pitch),
                math.sin(heading) * math.cos(pitch),
                math.sin(pitch),
            ]
        )
        left = np.array([-math.sin(heading), math.cos(heading), 0.0])
        up = np.cross(forward, left)
        up = up * math.cos(roll) + left * math.sin(roll)
        view = self.client.computeViewMatrix(list(eye), list(np.asarray(eye) + forward), list(up))
        projection = self.client.computeProjectionMatrixFOV(plan.fov_deg, width / height, NEAR, FAR)
        az, el = math.radians(plan.sun_azimuth_deg), math.radians(plan.sun_elevation_deg)
        sun = [
            math.cos(el) * math.cos(az) * 100,
            math.cos(el) * math.sin(az) * 100,
            math.sin(el) * 100,
        ]
        _, _, rgba, depth, seg = self.client.getCameraImage(
            width,
            height,
            view,
            projection,
            renderer=pybullet.ER_TINY_RENDERER,
            shadow=int(self.settings.shadows),
            lightDirection=sun,
            lightAmbientCoeff=0.55,
            lightDiffuseCoeff=0.5,
            lightSpecularCoeff=0.05,
        )
        rgb = np.reshape(np.asarray(rgba, dtype=np.uint8), (height, width, 4))[:, :, :3]
        seg = np.reshape(np.asarray(seg, dtype=np.int64), (height, width))
        depth = np.reshape(np.asarray(depth, dtype=np.float32), (height, width))
        return rgb, seg, depth


class _Look:
    """Sky, haze, exposure, blur and sensor noise: what makes clips differ in appearance."""

    def __init__(self, plan: ClipPlan, rng: np.random.Generator, size: tuple[int, int]) -> None:
        height, width = size
        top, horizon = (np.asarray(c, dtype=np.float32) for c in SKIES[plan.sky])
        top = np.clip(top + rng.uniform(-0.05, 0.05, 3), 0, 1)
        ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None] ** 0.6
        sky = top * (1 - ramp) + horizon * ramp
        clouds = cv2.resize(smooth_noise(rng, size=128, cells=4), (width, height))[:, :, None]
        cover = float(rng.uniform(0.0, 0.6)) if plan.sky != "overcast" else 0.2
        self.sky = np.clip(sky * (1 - cover * clouds) + cover * clouds * 0.95, 0, 1) * 255
        self.horizon = horizon * 255
        self.visibility = plan.visibility_m
        self.exposure = float(rng.uniform(0.85, 1.15))
        self.gamma = float(rng.uniform(0.9, 1.1))
        self.blur = plan.blur_sigma
        self.noise = plan.noise_sigma

    def apply(
        self, rgb: np.ndarray, label: np.ndarray, depth: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        image = rgb.astype(np.float32)
        distance = FAR * NEAR / (FAR - (FAR - NEAR) * depth)
        haze = (1.0 - np.exp(-distance / self.visibility))[:, :, None]
        image = image * (1 - haze) + self.horizon * haze
        sky = label == SKY
        image[sky] = self.sky[sky]
        image = 255.0 * (np.clip(image * self.exposure, 0, 255) / 255.0) ** self.gamma
        if self.blur > 0.05:
            image = cv2.GaussianBlur(image, (0, 0), self.blur)
        image += rng.normal(0.0, self.noise, image.shape).astype(np.float32)
        return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def render_clip(
    seed: int, settings: SceneSettings, num_frames: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Convenience: render one clip in a fresh renderer."""
    with SceneRenderer(settings) as renderer:
        _, frames = renderer.clip(seed, num_frames)
        yield from frames


def plan_dict(plan: ClipPlan) -> dict:
    return asdict(plan)
