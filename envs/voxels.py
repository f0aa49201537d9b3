"""BlockWorld's voxels: the block table, biome palettes and seeded terrain with trees and pillars.

The world is a ``(X, Y, Z)`` uint8 array of block codes (0 = air), x east, y north, z up; the block
at ``[x, y, z]`` fills the unit cube ``[x, x+1) x [y, y+1) x [z, z+1)``. A second array of the
same shape, ``owner``, holds the landmark slot + 1 of every block that belongs to a tree or a
pillar (0 elsewhere), which is what the segmentation shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AIR, BEDROCK, STONE, DIRT, GRASS, SAND, WATER, WOOD, LEAVES, SNOW, CLAY, BRICK, PLANKS = range(13)

#: Block code -> (name, RGB in 0..1). Hues and brightness differ enough that a block's type can be
#: read from its pixels under the face shading and texture noise.
BLOCKS: dict[int, tuple[str, tuple[float, float, float]]] = {
    AIR: ("air", (0.0, 0.0, 0.0)),
    BEDROCK: ("bedrock", (0.18, 0.18, 0.2)),
    STONE: ("stone", (0.52, 0.52, 0.55)),
    DIRT: ("dirt", (0.55, 0.38, 0.22)),
    GRASS: ("grass", (0.36, 0.68, 0.22)),
    SAND: ("sand", (0.88, 0.82, 0.56)),
    WATER: ("water", (0.16, 0.34, 0.82)),
    WOOD: ("wood", (0.36, 0.22, 0.1)),
    LEAVES: ("leaves", (0.1, 0.42, 0.12)),
    SNOW: ("snow", (0.94, 0.96, 0.98)),
    CLAY: ("clay", (0.8, 0.46, 0.26)),
    BRICK: ("brick", (0.7, 0.16, 0.16)),
    PLANKS: ("planks", (0.78, 0.62, 0.36)),
}
#: Blocks the player cannot break: the floor of the world and water.
UNBREAKABLE = frozenset({BEDROCK, WATER})


@dataclass(frozen=True)
class Biome:
    """What a biome's land is made of and the colour of its sky (horizon, zenith)."""

    top: int
    filler: int
    horizon: tuple[float, float, float]
    zenith: tuple[float, float, float]


BIOMES: dict[str, Biome] = {
    "meadow": Biome(GRASS, DIRT, (0.72, 0.84, 0.96), (0.36, 0.58, 0.92)),
    "forest": Biome(GRASS, DIRT, (0.66, 0.8, 0.9), (0.3, 0.5, 0.82)),
    "desert": Biome(SAND, SAND, (0.9, 0.88, 0.8), (0.5, 0.68, 0.9)),
    # Out of distribution: land and sky colours no in-distribution biome has.
    "tundra": Biome(SNOW, DIRT, (0.86, 0.88, 0.92), (0.6, 0.66, 0.76)),
    "mesa": Biome(CLAY, CLAY, (0.96, 0.78, 0.6), (0.62, 0.5, 0.7)),
}

BASE_HEIGHT = 6  # mean land height in blocks (bedrock is z = 0)
SEA_LEVEL = 5  # columns lower than this are filled with water up to it
TREE_TRUNK = (4, 6)  # trunk heights, [low, high)
PILLAR_HEIGHT = (6, 10)
SPAWN_CLEARANCE = 3  # no landmark within this many columns of the spawn column


@dataclass(frozen=True)
class Landmark:
    """A tree or a pillar: its kind, footprint corner (x, y), the z range it spans and its main block."""

    kind: str
    x: int
    y: int
    width: int
    z0: int
    z1: int
    block: int

    @property
    def center(self) -> tuple[float, float, float]:
        return (self.x + self.width / 2, self.y + self.width / 2, (self.z0 + self.z1) / 2)


@dataclass
class Terrain:
    """A generated world: blocks, landmark owners, the land's height map and the landmarks."""

    blocks: np.ndarray  # (X, Y, Z) uint8 block codes
    owner: np.ndarray  # (X, Y, Z) uint8 landmark slot + 1
    heights: np.ndarray  # (X, Y) int: z of the first air block above the land (before landmarks)
    landmarks: list[Landmark]


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a random (cells+1)^2 lattice, smoothstep-interpolated to (size, size)."""
    lattice = rng.random((cells + 1, cells + 1))
    u = (np.arange(size) + 0.5) * cells / size
    i = np.minimum(u.astype(int), cells - 1)
    f = u - i
    f = f * f * (3 - 2 * f)
    rows = lattice[i] * (1 - f)[:, None] + lattice[i + 1] * f[:, None]  # (size, cells+1)
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def generate(
    rng: np.random.Generator, size: tuple[int, int, int], biome: str, relief: float, trees: int, pillars: int
) -> Terrain:
    """A seeded world of ``size`` (X, Y, Z): a noise height map, water below ``SEA_LEVEL``, then
    ``trees`` trees and ``pillars`` 2x2 brick pillars on dry land away from the spawn column."""
    nx, ny, nz = size
    palette = BIOMES[biome]
    noise = 0.7 * smooth_noise(rng, max(nx, ny), 4) + 0.3 * smooth_noise(rng, max(nx, ny), 9)
    heights = np.clip(np.rint(BASE_HEIGHT + relief * (2 * noise[:nx, :ny] - 1)), 2, nz - 12).astype(int)

    z = np.arange(nz)[None, None, :]
    h = heights[:, :, None]
    blocks = np.where(z < h - 3, STONE, np.where(z < h - 1, palette.filler, np.where(z < h, palette.top, AIR)))
    # Under water the top block would be grass or snow; sand is what lies there.
    blocks = np.where((z == h - 1) & (h < SEA_LEVEL), SAND, blocks)
    blocks = np.where((z >= h) & (z < SEA_LEVEL), WATER, blocks)
    blocks[:, :, 0] = BEDROCK
    blocks = blocks.astype(np.uint8)
    owner = np.zeros(size, np.uint8)

    spawn = (nx // 2, ny // 2)
    taken: list[tuple[int, int]] = []
    landmarks: list[Landmark] = []
    for kind in ["tree"] * trees + ["pillar"] * pillars:
        width = 2 if kind == "pillar" else 1
        for _ in range(200):  # rejection sampling; a crowded map gives up rather than loop forever
            x, y = int(rng.integers(2, nx - 2 - width)), int(rng.integers(2, ny - 2 - width))
            footprint = heights[x : x + width, y : y + width]
            if (
                footprint.min() >= SEA_LEVEL
                and max(abs(x - spawn[0]), abs(y - spawn[1])) > SPAWN_CLEARANCE
                and all(max(abs(x - a), abs(y - b)) > 3 for a, b in taken)
            ):
                break
        else:
            continue
        taken.append((x, y))
        slot = len(landmarks) + 1
        ground = int(footprint.max())
        if kind == "tree":
            trunk = int(rng.integers(*TREE_TRUNK))
            top = ground + trunk
            for dz, radius in ((trunk - 2, 2), (trunk - 1, 2), (trunk, 1)):
                lo_x, lo_y = max(x - radius, 0), max(y - radius, 0)
                region = (slice(lo_x, x + radius + 1), slice(lo_y, y + radius + 1), ground + dz)
                air = blocks[region] == AIR
                blocks[region] = np.where(air, LEAVES, blocks[region])
                owner[region] = np.where(air, slot, owner[region])
            blocks[x, y, ground:top] = WOOD
            owner[x, y, ground:top] = slot
            landmarks.append(Landmark("tree", x, y, 1, ground, top + 1, LEAVES))
        else:
            top = ground + int(rng.integers(*PILLAR_HEIGHT))
            blocks[x : x + 2, y : y + 2, ground - 1 : top] = BRICK
            owner[x : x + 2, y : y + 2, ground - 1 : top] = slot
            landmarks.append(Landmark("pillar", x, y, 2, ground, top, BRICK))
    return Terrain(blocks, owner, heights, landmarks)
