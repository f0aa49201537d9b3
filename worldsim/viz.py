"""Pictures of episodes: frame strips and grids as RGB uint8 arrays, saved as PNG."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def frame_strip(frames: np.ndarray, count: int = 8, stride: int = 4, scale: int = 2) -> np.ndarray:
    """Every ``stride``-th frame of ``frames`` (T, H, W, 3), ``count`` of them side by side.

    Frames are enlarged ``scale`` times with nearest-neighbour sampling so that single pixels
    stay visible, and separated by a 2-pixel dark gutter (scenes may have a white sky).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    picked = frames[: count * stride : stride]
    height, width = frames.shape[1] * scale, frames.shape[2] * scale
    strip = np.full((height, len(picked) * (width + 2) - 2, 3), 48, np.uint8)
    for i, frame in enumerate(picked):
        big = cv2.resize(frame, (width, height), interpolation=cv2.INTER_NEAREST)
        strip[:, i * (width + 2) : i * (width + 2) + width] = big
    return strip


def labelled_rows(rows: list[tuple[str, np.ndarray]], label_width: int = 96) -> np.ndarray:
    """Stack images vertically, each with its label written in a white margin on the left."""
    width = max(image.shape[1] for _, image in rows)
    blocks = []
    for label, image in rows:
        block = np.full((image.shape[0] + 4, label_width + width, 3), 255, np.uint8)
        block[2 : 2 + image.shape[0], label_width : label_width + image.shape[1]] = image
        baseline = block.shape[0] // 2 + 5
        cv2.putText(block, label, (4, baseline), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        blocks.append(block)
    return np.concatenate(blocks, axis=0)


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}: check that the folder is writable")
    return path
