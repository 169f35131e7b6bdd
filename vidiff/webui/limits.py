"""What a request to the server may ask for: upload sizes, frame counts, run folders. Checked before
any work, each a one-line VidiffError that the page shows."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import VidiffError


@dataclass
class Limits:
    upload_mb: float = 20.0      # bytes per uploaded file (gradio refuses bigger ones before they land)
    frames: int = 256            # frames of an uploaded video, and of a requested result
    side: int = 1024             # pixels of an uploaded frame's longer side
    steps: int = 250             # sampling steps per request
    videos: int = 32             # videos per evaluation

    def check_frames(self, frames: np.ndarray, what: str) -> np.ndarray:
        t, h, w = frames.shape[:3]
        if t > self.frames:
            raise VidiffError(f"{what} has {t} frames; this server takes at most {self.frames}")
        if max(h, w) > self.side:
            raise VidiffError(f"{what} is {w}x{h}; this server takes at most {self.side} pixels a side")
        return frames

    def check_request(self, steps: int | None = None, frames: int | None = None, videos: int | None = None,
                      size: tuple[int | None, int | None] = (None, None)) -> None:
        if any(v is not None and not 1 <= v <= self.side for v in size):
            raise VidiffError(f"the size must be 1 to {self.side} pixels a side, got {size[0]}x{size[1]}")
        if steps is not None and not 1 <= steps <= self.steps:
            raise VidiffError(f"steps must be between 1 and {self.steps}, got {steps}")
        if frames is not None and not 1 <= frames <= self.frames:
            raise VidiffError(f"frames must be between 1 and {self.frames}, got {frames}")
        if videos is not None and not 1 <= videos <= self.videos:
            raise VidiffError(f"the number of videos must be between 1 and {self.videos}, got {videos}")


def run_folders(root: Path | None) -> list[str]:
    """Run and checkpoint folders under root, as paths relative to it (what the pickers offer)."""
    if root is None or not root.is_dir():
        return []
    found = []
    for config in sorted(root.rglob("config.json")):
        folder = config.parent
        if (folder.parent / "model_index.json").is_file():        # a component of a diffusers-format model
            continue
        if (folder / "latest").is_file() or ((folder / "model.safetensors").is_file()
                                             and folder.parent.name != "checkpoints"):
            found.append(str(folder.relative_to(root)))
    return found


def open_model_folders(root: Path | None) -> list[str]:
    """Diffusers-format model directories under root (model_index.json), relative to it."""
    if root is None or not root.is_dir():
        return []
    return [str(index.parent.relative_to(root)) for index in sorted(root.rglob("model_index.json"))]


def inside(root: Path | None, name: str) -> Path:
    """root / name, refused unless it stays under root (no '..', no absolute paths, no symlinks out)."""
    if root is None:
        raise VidiffError("this server was started without --runs; only the default model is available")
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_dir():
        raise VidiffError(f"'{name}' is not a run folder under this server's --runs directory")
    return path
