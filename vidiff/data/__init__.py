"""Datasets yield {"video": (C, T, H, W) in [-1, 1], "caption": str, ...extras}."""
from .synthetic import ShapesDataset, collate

DATASETS = {"shapes": ShapesDataset}
