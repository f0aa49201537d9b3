"""Pictures of episodes: frame strips and grids as RGB uint8 arrays, saved as PNG, GIF or mp4."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

GUTTER = 48  # the dark gray frame_strip puts between panels


def frame_strip(frames: np.ndarray, count: int = 8, stride: int = 4, scale: int = 2) -> np.ndarray:
    """Every ``stride``-th frame of ``frames`` (T, H, W, 3), ``count`` of them side by side.

    Frames are enlarged ``scale`` times with nearest-neighbour sampling so that single pixels
    stay visible, and separated by a 2-pixel dark gutter (scenes may have a white sky).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    picked = frames[: count * stride : stride]
    height, width = frames.shape[1] * scale, frames.shape[2] * scale
    strip = np.full((height, len(picked) * (width + 2) - 2, 3), GUTTER, np.uint8)
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


def title_band(width: int, panel_width: int, titles: list[str], scale: int) -> np.ndarray:
    """A white band with one black title over each panel (panels ``panel_width`` apart by a 2-px gutter)."""
    height = 12 + 4 * scale
    band = np.full((height, width, 3), 255, np.uint8)
    font_scale = min(0.3 + 0.1 * scale, 0.8)
    for i, title in enumerate(titles):
        cv2.putText(
            band,
            title,
            (i * (panel_width + 2) + 3, height - 4 - scale),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return band


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}: check that the folder is writable")
    return path


def write_gif(path: Path, pictures: list[np.ndarray], fps: int) -> None:
    """A looping GIF of RGB uint8 pictures. Pillow merges identical consecutive pictures into one
    longer frame, so a caller that needs every frame back marks each one (a time stamp)."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("writing a GIF needs Pillow: `pip install pillow`, or write an mp4") from None
    images = [Image.fromarray(picture) for picture in pictures]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)


def write_mp4(path: Path, pictures: list[np.ndarray], fps: int) -> None:
    """mp4v video; odd sides are padded by one gutter-gray pixel, which the codec requires."""
    height, width = pictures[0].shape[:2]
    size = (width + width % 2, height + height % 2)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), size)
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write an mp4v video to {path}: check the folder, or use format=gif")
    padded = np.full((size[1], size[0], 3), GUTTER, np.uint8)
    for picture in pictures:
        padded[:height, :width] = picture
        writer.write(cv2.cvtColor(padded, cv2.COLOR_RGB2BGR))
    writer.release()
