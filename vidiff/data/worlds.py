"""What a dataset's world knows beyond its clips, behind one interface, so the pipeline and the training
tasks never ask which world it is: the prompts a model of it can make, a caption for given frames, and
where objects overlap (the pixels an occlusion-aware loss weighs). A folder of real videos knows none
of these; the synthetic shapes world knows all three."""
from __future__ import annotations

import numpy as np
import torch

from ..config import DataConfig
from ..errors import VidiffError
from ..world import parse_caption
from .objects import caption_frames
from .synthetic import overlap_mask


class World:
    """A world that knows nothing beyond its captions (data.type folder)."""

    def check_prompts(self, prompts: list[str]) -> None:
        """A one-line error for a prompt a model of this world cannot make."""

    def describe(self, frames: np.ndarray) -> str | None:
        """A caption of (T, H, W, 3) uint8 frames in the world's words, or None."""
        return None

    def overlap_weights(self, batch: dict, weight: float) -> torch.Tensor | None:
        """(B, 1, T, H, W): 1 + weight on each clip's pixels where two objects overlap, else 1; None if the
        world cannot tell (or weight is 0)."""
        return None


class ShapesWorld(World):
    def __init__(self, cfg: DataConfig):
        self.shapes = cfg.shapes

    def check_prompts(self, prompts: list[str]) -> None:
        for p in prompts:        # a model never shown 3 objects draws 2
            if len(parse_caption(p)) > self.shapes.max_objects:
                raise VidiffError(f"'{p}' names {len(parse_caption(p))} objects; this model was trained on clips "
                                  f"of at most {self.shapes.max_objects}")

    def describe(self, frames: np.ndarray) -> str | None:
        s = self.shapes
        return caption_frames(frames, s.colours, s.shapes, s.max_objects)

    def overlap_weights(self, batch: dict, weight: float) -> torch.Tensor | None:
        if not weight or "tracks" not in batch:
            return None
        _, _, frames, height, _ = batch["video"].shape
        masks = np.stack([overlap_mask(tracks, frames, height) for tracks in batch["tracks"]])
        return 1.0 + weight * torch.from_numpy(masks[:, None]).float()


def world_of(cfg: DataConfig) -> World:
    return ShapesWorld(cfg) if cfg.type == "shapes" else World()
