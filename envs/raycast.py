"""A vectorised numpy voxel ray caster: every pixel's ray marched through the grid at once.

Why not PyBullet's TinyRenderer, which draws the other worlds: it rasterises every triangle of
every body, and a voxel world has thousands of visible cubes (12 triangles each), so a frame costs
tens of milliseconds where BlockWorld needs well under one. A ray caster's cost grows with pixels
times cells crossed, not with the number of blocks, and Amanatides & Woo's DDA visits exactly the
cells a ray crosses, so its hits are exact (no sampling step to miss a corner).

The march runs for all H*W rays together, one DDA step per numpy operation, on float32 arrays:

- each (yaw, pitch) gets its per-pixel ray directions, inverse direction lengths and flat-index
  steps once (``RayBundle``), since cameras turn in fixed steps and revisit the same angles;
- the grid is stored padded and z-major with a sentinel (``OUTSIDE``) in the border columns and in
  every layer above both the highest block and the eye, so one gather per step answers "hit a block,
  left the world, or rose above everything" without bounds checks;
- rays stop at ``view_distance`` (the fog is opaque there, as Minecraft's render distance), which
  bounds the number of steps, and finished rays are dropped from the arrays as they finish.

``cast_ray`` is the same DDA for one ray in plain Python floats: the crosshair uses it, and the tests
hold the vectorised march to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from worldsim.envs.camera import FAR

#: Marks cells outside the world (border columns, the layers above everything) in the march grid.
OUTSIDE = 255
#: Brightness of a face by the axis it faces and whether the ray travelled along + or - that axis:
#: (x-, x+, y-, y+, z-, z+) of the ray's step. A ray stepping down (z-) hits a top face.
FACE_SHADE = np.array([0.8, 0.8, 0.66, 0.66, 1.0, 0.55], np.float32)
HORIZON_BINS = 64  # headings of the horizon profile (5.6 degrees each)
TEXELS = 4  # per block edge, for the texture noise
TEXTURE_NOISE = 0.07  # +- brightness of a texel


def camera_axes(yaw: float, pitch: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(forward, right, up) unit vectors; yaw 0 looks along +y, yaw > 0 turns right, pitch > 0 up."""
    cp, sp, cy, sy = math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw)
    forward = np.array([sy * cp, cy * cp, sp])
    right = np.array([cy, -sy, 0.0])
    up = np.array([-sy * sp, -cy * sp, cp])  # right x forward
    return forward, right, up


@dataclass(frozen=True)
class RayBundle:
    """Per-pixel ray data for one camera orientation (N = H*W rays, row-major from the top left)."""

    key: tuple[float, float]  # (yaw, pitch)
    direction: np.ndarray  # (3, N) float32 unit vectors
    inverse: np.ndarray  # (3, N) float32 |1 / direction| (t between crossings of one axis)
    reciprocal: np.ndarray  # (3, N) float32 1 / direction, +1e30 for a zero component
    positive: np.ndarray  # (3, N) bool: direction >= 0
    step: np.ndarray  # (3, N) int32 flat-index step of one cell along each axis
    axial: np.ndarray  # (N,) float32 cosine to the view axis: depth = t * axial
    sky: np.ndarray  # (N, 1) float32 0 at the horizon .. 1 at the zenith
    azimuth: np.ndarray  # (N,) int horizon bin of the ray's heading (see VoxelRenderer.horizon)
    slope: np.ndarray  # (N,) float32 rise per unit of horizontal travel; -inf for rays that do not rise


@dataclass
class Hits:
    """What each pixel's ray hit: (N,) arrays, N = H*W."""

    distance: np.ndarray  # float32 along the ray; inf for sky
    cell: np.ndarray  # int64 flat index into the march grid; for sky, the parking cell (air, no owner)
    face: np.ndarray  # int8 FACE_SHADE index of the face hit (meaningless for sky)
    hit: np.ndarray  # (M,) int64 the rays that hit a block, ascending


class VoxelRenderer:
    """Renders a voxel world of ``size`` (X, Y, Z) at ``width`` x ``height`` with a vertical ``fov``."""

    def __init__(self, size: tuple[int, int, int], width: int, height: int, fov: float, view_distance: float):
        self.size, self.width, self.height = size, width, height
        self.fov, self.view_distance = fov, view_distance
        nx, ny, nz = size
        # z-major, one border column each side in x and y, one sentinel layer on top.
        self.shape = (nz + 1, nx + 2, ny + 2)
        self.strides = np.array([ny + 2, 1, (nx + 2) * (ny + 2)], np.int32)  # flat step along x, y, z
        # No ray crosses more than view_distance * (|dx| + |dy| + |dz|) + 3 cells before it is too far.
        self.max_steps = math.ceil(view_distance * math.sqrt(3)) + 3
        self.bundles: dict[tuple[float, float], RayBundle] = {}
        self.horizon_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.backgrounds: dict[tuple[float, float, bytes], tuple[np.ndarray, np.ndarray]] = {}
        # One air cell past the end of the grid: finished rays park there (see march).
        self.flat_grid = np.full(math.prod(self.shape) + 1, OUTSIDE, np.uint8)
        self.flat_grid[-1] = 0
        self.park = self.flat_grid.size - 1
        self.grid = self.flat_grid[:-1].reshape(self.shape)
        # World (x, y, z) of every march-grid cell's low corner, by flat index (padding included).
        z, x, y = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in self.shape), indexing="ij")
        self.corner = np.stack([x.ravel() - 1, y.ravel() - 1, z.ravel()])  # (3, cells)
        self.flat_owner = np.zeros(self.flat_grid.size, np.uint8)
        self.owner_grid = self.flat_owner[:-1].reshape(self.shape)
        self.ceiling = -1
        rng = np.random.default_rng(0)  # a fixed texture, the same in every world and process
        self.noise = (1 + TEXTURE_NOISE * (2 * rng.random(4096) - 1)).astype(np.float32)

    # ----------------------------------------------------------------- the world

    def set_world(self, blocks: np.ndarray, owner: np.ndarray) -> None:
        """Copy a (X, Y, Z) world into the padded march grid."""
        if blocks.shape != self.size:
            raise ValueError(f"blocks of shape {blocks.shape} given to a renderer of size {self.size}")
        self.blocks, self.owner = blocks, owner
        self.owner_grid[:-1, 1:-1, 1:-1] = owner.transpose(2, 0, 1)
        solid = np.flatnonzero(blocks.any(axis=(0, 1)))
        self.top = int(solid[-1]) if solid.size else 0
        self.ceiling = -1  # rebuilt by the next render
        # The z above each column's highest block, and -inf for the padding entry of _horizon's lists.
        above = blocks.shape[2] - np.argmax(blocks[:, :, ::-1] != 0, axis=2)
        self.column_top = np.append(np.where(blocks.any(axis=2), above, 0).astype(np.float32).ravel(), -np.inf)

    def edit(self, x: int, y: int, z: int) -> None:
        """Mirror a change of ``blocks[x, y, z]`` (and ``owner``) made by the caller."""
        if z < self.ceiling:
            self.grid[z, x + 1, y + 1] = self.blocks[x, y, z]
        self.owner_grid[z, x + 1, y + 1] = self.owner[x, y, z]
        if self.blocks[x, y, z] and z > self.top:
            self.top = z
            self.ceiling = -1
        solid = np.flatnonzero(self.blocks[x, y])
        self.column_top[x * self.size[1] + y] = solid[-1] + 1 if solid.size else 0

    def _set_ceiling(self, eye_z: int) -> None:
        # Above max(top block, eye) every layer is air that no ray can come back down from: marking
        # it OUTSIDE ends upward rays there instead of at the top of the grid.
        ceiling = min(max(self.top, eye_z) + 1, self.size[2])
        if ceiling != self.ceiling:
            self.grid[:ceiling, 1:-1, 1:-1] = self.blocks[:, :, :ceiling].transpose(2, 0, 1)
            self.grid[ceiling:] = OUTSIDE
            self.ceiling = ceiling

    def _columns_by_heading(self, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
        """For an eye anywhere in column (x, y): per horizon bin, the columns within view whose square
        some ray of that heading can cross, and their nearest horizontal distance (cached per column).

        (HORIZON_BINS, M) column indices padded with the index of ``column_top``'s -inf entry, and
        (M,)-matching distances. Conservative: the headings from any point of the eye's unit square
        to any point of a column's square lie within a 2x2 square around their centres' offset.
        """
        key = (x, y)
        if key not in self.horizon_cache:
            nx, ny, _ = self.size
            dx, dy = np.meshgrid(np.arange(nx) - x, np.arange(ny) - y, indexing="ij")
            dx, dy = dx.ravel().astype(np.float64), dy.ravel().astype(np.float64)
            centre = np.hypot(dx, dy)
            near = np.hypot(np.maximum(np.abs(dx) - 1, 0), np.maximum(np.abs(dy) - 1, 0))
            heading = np.arctan2(dx, dy) % (2 * math.pi)
            half = np.arcsin(np.minimum(math.sqrt(2) / np.maximum(centre, 1e-9), 1.0))
            width = 2 * math.pi / HORIZON_BINS
            low = np.floor((heading - half) / width).astype(int)
            span = np.where(half >= math.pi / 2, HORIZON_BINS - 1, np.floor((heading + half) / width) - low)
            bins = np.arange(HORIZON_BINS)[:, None]
            cover = ((bins - low) % HORIZON_BINS <= span) & (near < self.view_distance)  # (A, C)
            width_m = int(cover.sum(axis=1).max())
            columns = np.full((HORIZON_BINS, width_m), nx * ny, np.int64)
            for b in range(HORIZON_BINS):
                found = np.flatnonzero(cover[b])
                columns[b, : found.size] = found
            distance = np.append(near, 0.0).astype(np.float32)
            if len(self.horizon_cache) >= 256:
                self.horizon_cache.clear()
            self.horizon_cache[key] = (columns, distance)
        return self.horizon_cache[key]

    def sky_rays(self, eye: np.ndarray, rays: RayBundle) -> np.ndarray:
        """(N,) bool: rays that rise above every column they can cross within view, so hit nothing.

        Sky rays are the longest to march (to the fog, or to the ceiling); this horizon test finds
        most of them for the cost of a few operations per ray, and exactly: a rising ray over a
        column at horizontal distance r is at eye height + slope * r there.
        """
        columns, distance = self._columns_by_heading(int(eye[0]), int(eye[1]))
        with np.errstate(divide="ignore", invalid="ignore"):
            rise = (self.column_top - np.float32(eye[2])) / distance  # (C + 1,)
        rise[distance == 0] = np.where(self.column_top[distance == 0] > eye[2], np.inf, -np.inf)
        horizon = rise[columns].max(axis=1)  # (A,) the steepest rise to clear, per heading
        return rays.slope > horizon[rays.azimuth]

    # ----------------------------------------------------------------- rays

    def bundle(self, yaw: float, pitch: float) -> RayBundle:
        """The per-pixel rays of a camera orientation, computed once per (yaw, pitch)."""
        key = (yaw, pitch)
        if key not in self.bundles:
            if len(self.bundles) >= 1024:
                self.bundles.clear()
            forward, right, up = camera_axes(yaw, pitch)
            w, h = self.width, self.height
            tan = math.tan(math.radians(self.fov) / 2)
            # Pixel centres in NDC, the inverse of camera_projection: x right, y up.
            ndc_x = (np.arange(w) + 0.5) / w * 2 - 1
            ndc_y = 1 - (np.arange(h) + 0.5) / h * 2
            cx = np.broadcast_to(ndc_x[None, :] * tan * w / h, (h, w)).ravel()
            cy = np.broadcast_to(ndc_y[:, None] * tan, (h, w)).ravel()
            rays = forward[:, None] + right[:, None] * cx[None] + up[:, None] * cy[None]  # (3, N)
            length = np.linalg.norm(rays, axis=0)
            direction = rays / length
            with np.errstate(divide="ignore"):
                inverse = np.minimum(1.0 / np.abs(direction), 1e30)
            positive = direction >= 0  # a zero component counts as positive: (1 - frac) / 0 is never 0
            step = np.where(positive, 1, -1).astype(np.int32) * self.strides[:, None]
            heading = np.arctan2(direction[0], direction[1]) % (2 * math.pi)
            flat = np.hypot(direction[0], direction[1])
            with np.errstate(divide="ignore"):
                slope = np.where(direction[2] > 0, direction[2] / flat, -np.inf)
            self.bundles[key] = RayBundle(
                key,
                direction.astype(np.float32),
                inverse.astype(np.float32),
                np.where(positive, inverse, -inverse).astype(np.float32),
                positive,
                step,
                (1.0 / length).astype(np.float32),
                np.clip(direction[2], 0.0, 1.0).astype(np.float32)[:, None],
                np.minimum((heading / (2 * math.pi) * HORIZON_BINS).astype(int), HORIZON_BINS - 1),
                slope.astype(np.float32),
            )
        return self.bundles[key]

    def march(self, eye: np.ndarray, rays: RayBundle) -> Hits:
        """Every ray's first block from ``eye`` (3,) within ``view_distance``."""
        n = rays.direction.shape[1]
        cell = np.floor(eye).astype(int)
        self._set_ceiling(int(cell[2]))
        frac = (eye - cell).astype(np.float32)
        # t of each ray's first crossing per axis: (1 - frac) / |d| going up the axis, frac / |d| down.
        t_next = np.where(rays.positive, (1 - frac)[:, None], frac[:, None]) * rays.inverse  # (3, N)
        start = (cell[2] * self.shape[1] + cell[0] + 1) * self.shape[2] + cell[1] + 1
        alive = np.flatnonzero(~self.sky_rays(eye, rays))
        t_next = t_next.take(alive, axis=1)
        delta = rays.inverse.take(alive, axis=1)
        step = rays.step.take(alive, axis=1)  # a copy: parking writes to it
        index = np.full(len(alive), start, np.int64)
        grid = self.flat_grid
        ended_in = np.full(n, self.park, np.int64)  # the cell each ray stopped in; park (air) = sky
        parked = 0
        along = np.empty((3, len(alive)), bool)  # which axis each ray steps along
        for i in range(self.max_steps):
            tx, ty, tz = t_next
            along_x, along_y, along_z = along
            # One DDA step: the axis whose next crossing is nearest advances (ties: y before x, then z).
            # Only the cell is tracked here; where and through which face a ray entered its last cell
            # is computed once for all rays afterwards (``_entry``), which keeps this loop short.
            x_first = tx < ty
            np.less(tz, np.minimum(tx, ty), out=along_z)
            np.greater(x_first, along_z, out=along_x)  # x_first and not along_z, in one operation
            np.greater(~x_first, along_z, out=along_y)
            # Multiplying by the (3, n) mask is several times faster than np.where or np.add(where=).
            t_next += delta * along
            index += (step * along).sum(axis=0)
            done = grid.take(index) != 0
            if i % 4 == 3:  # rays whose next cell starts past the fog stop; a later hit is undone below
                done |= t_next.min(axis=0) > self.view_distance
            if not done.any():
                continue
            ended = np.flatnonzero(done)
            ended_in[alive[ended]] = index[ended]
            # Finished rays park in an air cell with zero steps (and crossings at -inf, so the fog
            # never ends them twice), which costs three small writes; the arrays shrink only once
            # half of them are parked, as taking every array costs more.
            index[ended] = self.park
            step[:, ended] = 0
            t_next[:, ended] = -np.inf
            parked += len(ended)
            if parked * 2 < len(alive):
                continue
            keep = np.flatnonzero(index != self.park)
            if not keep.size:
                break
            alive, index, parked = alive[keep], index[keep], 0
            along = np.empty((3, len(keep)), bool)
            # take() keeps the (3, n) arrays C-contiguous, so their rows stay views the adds write through.
            t_next, delta, step = t_next.take(keep, axis=1), delta.take(keep, axis=1), step.take(keep, axis=1)
        return self._entry(eye, rays, ended_in)

    def _entry(self, eye: np.ndarray, rays: RayBundle, cell: np.ndarray) -> Hits:
        """Distance and face of each ray's entry into the block ``cell`` (flat index) it stopped in.

        A ray enters a box where the last of its three slabs begins (the slab method), so the entry
        is ``max_a (plane_a - eye_a) / d_a`` over the near face planes, and that axis is the face.
        """
        value = self.flat_grid[cell]
        hit = np.flatnonzero((value != 0) & (value != OUTSIDE))
        cell_hit = cell[hit]
        positive = rays.positive[:, hit]
        # Near face planes: the cell's low side when travelling up an axis, its high side going down.
        near = np.stack([self.corner[a].take(cell_hit) for a in range(3)]) + ~positive  # (3, M)
        # A zero direction component has reciprocal +1e30 and a plane behind the eye: never the max.
        sx, sy, sz = (near - eye.astype(np.float32)[:, None]) * rays.reciprocal[:, hit]
        # argmax over the three rows by comparisons: argmax(axis=0) on (3, M) loops per column.
        t = np.maximum(np.maximum(sx, sy), sz)
        axis = np.where(sz == t, 2, np.where(sy == t, 1, 0))
        seen = t <= self.view_distance
        hit, t, axis = hit[seen], t[seen], axis[seen]
        distance = np.full(len(cell), np.inf, np.float32)
        distance[hit] = t
        face = np.zeros(len(cell), np.int8)
        face[hit] = 2 * axis + positive[axis[None], np.flatnonzero(seen)[None]][0]
        return Hits(distance, np.where(np.isfinite(distance), cell, self.park), face, hit)

    def background(self, rays: RayBundle, sky: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The sky behind every pixel, (N, 3) float32 and uint8, from the horizon and zenith colours
        ``sky`` (2, 3); cached per bundle and sky, as both change only with the view and the world."""
        key = (*rays.key, sky.tobytes())
        if key not in self.backgrounds:
            if len(self.backgrounds) >= 256:
                self.backgrounds.clear()
            color = sky[0] + (sky[1] - sky[0]) * rays.sky
            self.backgrounds[key] = (color, to_bytes(color))
        return self.backgrounds[key]

    def shade(self, hits: Hits, rays: RayBundle, eye: np.ndarray, palette: np.ndarray, sky: np.ndarray) -> np.ndarray:
        """RGB uint8 (N, 3): block colour x face shade x texel noise, fogged into the sky colour.

        ``palette`` is (256, 3) float32 by block code; ``sky`` (2, 3) the horizon and zenith colours.
        """
        background, frame = self.background(rays, sky)
        hit = hits.hit
        t, cell, face = hits.distance[hit], hits.cell[hit], hits.face[hit]
        point = eye.astype(np.float32)[:, None] + rays.direction[:, hit] * t  # (3, M)
        # Texel coordinates on the face: the two axes the face spans (its own axis reads 0).
        texel = np.minimum(((point - np.floor(point)) * TEXELS).astype(np.int64), TEXELS - 1)
        texel[face // 2, np.arange(len(hit))] = 0
        code = ((cell * 64 + texel[0] * 16 + texel[1] * 4 + texel[2]) * 8 + face) * 2654435761 & 0xFFFFFFFF
        noise = self.noise[(code ^ (code >> 16)) & (len(self.noise) - 1)]
        color = palette[self.flat_grid[cell]] * (FACE_SHADE[face] * noise)[:, None]
        fog = np.clip((t - 0.6 * self.view_distance) / (0.4 * self.view_distance), 0.0, 1.0)[:, None]
        frame = frame.copy()
        frame[hit] = to_bytes(color + (background[hit] - color) * fog)
        return frame

    def render(
        self, eye: np.ndarray, yaw: float, pitch: float, palette: np.ndarray, sky: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(frame (H, W, 3) uint8, depth (H, W) float32 along the view axis (``FAR`` for sky),
        block (H, W) uint8 codes (0 for sky), owner (H, W) uint8 landmark slot + 1)."""
        rays = self.bundle(yaw, pitch)
        hits = self.march(eye, rays)
        h, w = self.height, self.width
        frame = self.shade(hits, rays, eye, palette, sky).reshape(h, w, 3)
        depth = np.full(h * w, FAR, np.float32)
        depth[hits.hit] = hits.distance[hits.hit] * rays.axial[hits.hit]
        block = self.flat_grid[hits.cell].reshape(h, w)  # sky rays point at the parking cell: 0
        owner = self.flat_owner[hits.cell].reshape(h, w)
        return frame, depth.reshape(h, w), block, owner


def to_bytes(color: np.ndarray) -> np.ndarray:
    """RGB in 0..1 -> uint8, rounded."""
    return np.clip(color * 255 + 0.5, 0, 255).astype(np.uint8)


def cast_ray(
    blocks: np.ndarray, origin: np.ndarray, direction: np.ndarray, max_distance: float
) -> tuple[float, tuple[int, int, int], tuple[int, int, int]] | None:
    """The first block a ray from ``origin`` along unit ``direction`` enters within ``max_distance``.

    Returns (distance, the block's cell, the cell the ray came from: where a placed block goes),
    or None when the ray leaves the grid or goes too far first. The ray's starting cell is not tested.
    """
    cell = [math.floor(c) for c in origin]
    step = [1 if d > 0 else -1 for d in direction]
    inverse = [1.0 / abs(d) if d != 0 else math.inf for d in direction]
    t_next = [
        math.inf if d == 0 else ((cell[a] + 1 - origin[a]) if d > 0 else (origin[a] - cell[a])) * inverse[a]
        for a, d in enumerate(direction)
    ]
    shape = blocks.shape
    while True:
        # Ties broken as the vectorised march breaks them: y before x, x or y before z.
        axis = 0 if t_next[0] < t_next[1] else 1
        axis = 2 if t_next[2] < t_next[axis] else axis
        t = t_next[axis]
        if t > max_distance:
            return None
        previous = tuple(cell)
        cell[axis] += step[axis]
        t_next[axis] += inverse[axis]
        if not all(0 <= cell[a] < shape[a] for a in range(3)):
            return None
        if blocks[cell[0], cell[1], cell[2]]:
            return t, (cell[0], cell[1], cell[2]), previous
