"""Low-poly triangle meshes with texture coordinates for the scene generator.

pybullet's software renderer culls back faces, so every face is wound counter-clockwise seen
from outside. Texture coordinates either tile the texture every `tile` metres (roads, facades)
or map each face onto one rectangle of a texture atlas (cars, signs).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

UvRect = tuple[float, float, float, float]
FULL_RECT: UvRect = (0.0, 0.0, 1.0, 1.0)
MAX_CELL = 8.0


@dataclass
class Mesh:
    """Triangles as flat lists, in the form pybullet's `createVisualShape(GEOM_MESH)` takes."""

    vertices: list[list[float]] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    uvs: list[list[float]] = field(default_factory=list)
    normals: list[list[float]] = field(default_factory=list)

    def extend(self, other: Mesh) -> Mesh:
        offset = len(self.vertices)
        self.vertices += other.vertices
        self.indices += [i + offset for i in other.indices]
        self.uvs += other.uvs
        self.normals += other.normals
        return self

    def add_quad(
        self,
        corners: np.ndarray,
        normal: np.ndarray,
        uv_rect: UvRect = FULL_RECT,
        tile: float | None = None,
        cell: float = MAX_CELL,
    ) -> None:
        """Add a planar quad given counter-clockwise corners (seen from the `normal` side).

        Large quads are split into cells of at most `cell` metres: the software rasteriser
        scans each triangle's screen bounding box, so long thin triangles cost far more than
        the pixels they cover.
        """
        edge_u, edge_v = corners[1] - corners[0], corners[3] - corners[0]
        width, height = float(np.linalg.norm(edge_u)), float(np.linalg.norm(edge_v))
        steps_u, steps_v = max(1, math.ceil(width / cell)), max(1, math.ceil(height / cell))
        u0, v0, u1, v1 = uv_rect if tile is None else (0.0, 0.0, width / tile, height / tile)
        offset = len(self.vertices)
        for j in range(steps_v + 1):
            for i in range(steps_u + 1):
                a, b = i / steps_u, j / steps_v
                self.vertices.append([float(c) for c in corners[0] + a * edge_u + b * edge_v])
                self.uvs.append([u0 + a * (u1 - u0), v0 + b * (v1 - v0)])
        self.normals += [[float(n) for n in normal]] * ((steps_u + 1) * (steps_v + 1))
        row = steps_u + 1
        for j in range(steps_v):
            for i in range(steps_u):
                k = offset + j * row + i
                self.indices += [k, k + 1, k + row + 1, k, k + row + 1, k + row]


def box(
    size: tuple[float, float, float],
    center: tuple[float, float, float] = (0.0, 0.0, 0.0),
    uv_rect: UvRect = FULL_RECT,
    tile: float | None = None,
    bottom: bool = False,
) -> Mesh:
    """An axis-aligned box; the bottom face is left out unless asked (it is never seen)."""
    sx, sy, sz = (s / 2.0 for s in size)
    cx, cy, cz = center
    mesh = Mesh()
    faces = {
        (1, 0, 0): [(sx, -sy, -sz), (sx, sy, -sz), (sx, sy, sz), (sx, -sy, sz)],
        (-1, 0, 0): [(-sx, sy, -sz), (-sx, -sy, -sz), (-sx, -sy, sz), (-sx, sy, sz)],
        (0, 1, 0): [(sx, sy, -sz), (-sx, sy, -sz), (-sx, sy, sz), (sx, sy, sz)],
        (0, -1, 0): [(-sx, -sy, -sz), (sx, -sy, -sz), (sx, -sy, sz), (-sx, -sy, sz)],
        (0, 0, 1): [(-sx, -sy, sz), (sx, -sy, sz), (sx, sy, sz), (-sx, sy, sz)],
    }
    if bottom:
        faces[(0, 0, -1)] = [(-sx, sy, -sz), (sx, sy, -sz), (sx, -sy, -sz), (-sx, -sy, -sz)]
    for normal, corners in faces.items():
        points = np.asarray(corners) + np.asarray([cx, cy, cz])
        mesh.add_quad(points, np.asarray(normal, dtype=float), uv_rect, tile)
    return mesh


def ground_quad(
    x0: float, x1: float, y0: float, y1: float, z: float, tile: float | None, cell: float = MAX_CELL
) -> Mesh:
    """A horizontal rectangle facing up."""
    mesh = Mesh()
    corners = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=float)
    mesh.add_quad(corners, np.array([0.0, 0.0, 1.0]), tile=tile, cell=cell)
    return mesh


def prism(
    radius: float,
    height: float,
    sides: int = 6,
    center: tuple[float, float, float] = (0.0, 0.0, 0.0),
    uv_rect: UvRect = FULL_RECT,
) -> Mesh:
    """A vertical prism (a cheap cylinder) standing on its base at `center`."""
    mesh = Mesh()
    cx, cy, cz = center
    angles = np.linspace(0.0, 2 * np.pi, sides + 1)
    for a0, a1 in itertools.pairwise(angles):
        p0 = np.array([cx + radius * np.cos(a0), cy + radius * np.sin(a0), cz])
        p1 = np.array([cx + radius * np.cos(a1), cy + radius * np.sin(a1), cz])
        up = np.array([0.0, 0.0, height])
        mid = (a0 + a1) / 2
        normal = np.array([np.cos(mid), np.sin(mid), 0.0])
        mesh.add_quad(np.stack([p0, p1, p1 + up, p0 + up]), normal, uv_rect)
    return mesh


def blob(
    radius: float,
    center: tuple[float, float, float],
    rng: np.random.Generator,
    squash: float = 1.0,
    roughness: float = 0.15,
    uv_rect: UvRect = FULL_RECT,
) -> Mesh:
    """A lumpy low-poly ball (an icosahedron subdivided once, radii jittered): tree canopies,
    heads and bushes."""
    vertices, faces = _icosphere()
    radii = radius * (1.0 + roughness * rng.uniform(-1.0, 1.0, len(vertices)))
    points = vertices * radii[:, None] * np.array([1.0, 1.0, squash]) + np.asarray(center)
    mesh = Mesh()
    u0, v0, u1, v1 = uv_rect
    for face in faces:
        tri = points[face]
        normal = np.cross(tri[1] - tri[0], tri[2] - tri[0])
        if np.dot(normal, tri.mean(axis=0) - np.asarray(center)) < 0:
            tri = tri[::-1]
            normal = -normal
        normal /= np.linalg.norm(normal) + 1e-12
        offset = len(mesh.vertices)
        mesh.vertices += tri.tolist()
        mesh.normals += [normal.tolist()] * 3
        mesh.uvs += [[u0, v0], [u1, v0], [(u0 + u1) / 2, v1]]
        mesh.indices += [offset, offset + 1, offset + 2]
    return mesh


def _icosphere() -> tuple[np.ndarray, np.ndarray]:
    """Unit icosahedron subdivided once: 42 vertices, 80 faces (winding fixed by the caller)."""
    t = (1.0 + 5**0.5) / 2.0
    verts = [
        (-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
        (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1),
    ]  # fmt: skip
    faces = [
        (0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
        (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
        (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1),
    ]  # fmt: skip
    points = [np.asarray(v, dtype=float) / np.linalg.norm(v) for v in verts]
    midpoint: dict[tuple[int, int], int] = {}

    def middle(a: int, b: int) -> int:
        key = (min(a, b), max(a, b))
        if key not in midpoint:
            m = points[a] + points[b]
            points.append(m / np.linalg.norm(m))
            midpoint[key] = len(points) - 1
        return midpoint[key]

    refined = []
    for a, b, c in faces:
        ab, bc, ca = middle(a, b), middle(b, c), middle(c, a)
        refined += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
    return np.stack(points), np.asarray(refined)
