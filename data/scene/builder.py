"""Creates pybullet bodies from meshes and remembers which class each body belongs to."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from splitcast.data.scene.bullet import BulletClient
from splitcast.data.scene.meshes import Mesh

Tint = tuple[float, float, float]


def yaw_quaternion(yaw: float, pitch: float = 0.0) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w) of a rotation by `pitch` about y, then `yaw` about z."""
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    return (-sy * sp, cy * sp, sy * cp, cy * cp)


class SceneBuilder:
    """Adds textured, tinted static or movable bodies to one pybullet world."""

    def __init__(self, client: BulletClient, texture_dir: Path) -> None:
        self.client = client
        self.texture_dir = texture_dir
        self.body_class: dict[int, int] = {}
        self._textures: dict[str, int] = {}

    def texture(self, name: str, image: np.ndarray) -> int:
        """Register a texture image under `name` (written as PNG, loaded by pybullet)."""
        path = self.texture_dir / f"{name}.png"
        Image.fromarray(image).save(path)
        self._textures[name] = self.client.loadTexture(str(path))
        return self._textures[name]

    def add(
        self,
        mesh: Mesh,
        class_id: int,
        position: tuple[float, float, float],
        yaw: float = 0.0,
        tint: Tint = (1.0, 1.0, 1.0),
        texture: str | None = None,
    ) -> int:
        """Create one body; returns its unique id (the id the segmentation mask reports)."""
        colour = [*(float(c) for c in tint), 1.0]
        shape = self.client.createVisualShape(
            self.client.GEOM_MESH,
            vertices=mesh.vertices,
            indices=mesh.indices,
            uvs=mesh.uvs,
            normals=mesh.normals,
            rgbaColor=colour,
        )
        body = self.client.createMultiBody(
            baseMass=0,
            baseVisualShapeIndex=shape,
            basePosition=position,
            baseOrientation=yaw_quaternion(yaw),
        )
        if texture is not None:
            self.client.changeVisualShape(
                body, -1, textureUniqueId=self._textures[texture], rgbaColor=colour
            )
        self.body_class[body] = class_id
        return body

    def move(
        self, body: int, position: tuple[float, float, float], yaw: float, pitch: float = 0.0
    ) -> None:
        self.client.resetBasePositionAndOrientation(body, position, yaw_quaternion(yaw, pitch))

    def class_lookup(self, background: int) -> np.ndarray:
        """Array mapping (body id + 1) to class id; index 0 (no body, id -1) is `background`."""
        table = np.full(max(self.body_class, default=0) + 2, background, dtype=np.uint8)
        for body, class_id in self.body_class.items():
            table[body + 1] = class_id
        return table
