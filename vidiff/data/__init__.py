"""Datasets yield {"video": (C, T, H, W) in [-1, 1], "caption": str, ...extras}, and
item(micro_index, position, batch_size) gives sample `position` of a global micro-batch."""
from dataclasses import replace

from .synthetic import ShapesDataset, collate
from .video_folder import CROPS, VideoFolderDataset

DATASETS = {"shapes": ShapesDataset, "folder": VideoFolderDataset}


def build_dataset(cfg, vocab: list[str] | None = None, captions: bool = True, multiple: int = 8):
    """The dataset a data config describes; folder data checks captions against the model's vocabulary
    (captions=False: uncaptioned files are kept, for the VAE) and buckets clips at sides that are
    multiples of `multiple` pixels."""
    if cfg.type == "folder":
        return VideoFolderDataset(cfg, vocab, captions=captions, multiple=multiple)
    return DATASETS[cfg.type](cfg)


def unit_stride(cfg):
    """The data config at the trained frame rate (data.shapes.strides [1]): the world a model's videos
    show unless it is asked for another stride, so held-out clips and FVD references come from it."""
    return replace(cfg, shapes=replace(cfg.shapes, strides=[1]))
