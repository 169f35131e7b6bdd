"""Aspect-ratio and frame-count buckets for folder data, as the trainers of open models do them
(musubi-tuner, diffusion-pipe, ai-toolkit): a clip keeps its own shape instead of a square crop.

A file's bucket is (frames, height, width): its frame count is the largest target frame count its
length holds at its stride; its size is the file's aspect ratio scaled to a target pixel area
(data.size x data.size), each side rounded to the model's multiple and never above the source (no
upscaling: a small file trains at its own size). A batch holds one bucket. The batch order is a pure
function of (seed, epoch), so an exact resume sees the same batches.
"""
from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache

import numpy as np

Bucket = tuple[int, int, int]         # (frames, height, width)


def bucket_size(height: int, width: int, area: int, multiple: int) -> tuple[int, int] | None:
    """(h, w) for a source of height x width at about `area` pixels, its aspect ratio kept, both
    multiples of `multiple` and neither above the source; None if the source is under one multiple."""
    if height < multiple or width < multiple:
        return None
    scale = math.sqrt(min(area, height * width) / (height * width))
    def side(n: int) -> int:
        return min(max(1, round(n * scale / multiple)), n // multiple) * multiple
    return side(height), side(width)


def frame_bucket(available: int, targets: list[int], stride: int) -> int | None:
    """The longest target frame count a video of `available` frames holds at `stride`; None if none."""
    fitting = [t for t in targets if (t - 1) * stride + 1 <= available]
    return max(fitting) if fitting else None


def describe(counts: Counter) -> str:
    """'81x480x832: 12, 1x512x512: 30' (frames x height x width: clips), largest bucket first."""
    return ", ".join(f"{f}x{h}x{w}: {n}" for (f, h, w), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


class BatchSchedule:
    """Which item fills each place of each batch: per epoch, every bucket's items shuffled and cut into
    batches of `batch_size` (the last one topped up from the start of the same shuffle), then the
    batches shuffled. Every epoch has the same number of batches, so batch k's epoch is k // that."""

    def __init__(self, buckets: list[Bucket], seed: int, batch_size: int):
        self.seed, self.batch_size = seed, batch_size
        self.groups: dict[Bucket, list[int]] = {}
        for i, b in enumerate(buckets):
            self.groups.setdefault(b, []).append(i)
        self.keys = sorted(self.groups)
        self.per_epoch = sum(math.ceil(len(self.groups[b]) / batch_size) for b in self.keys)

    @lru_cache(maxsize=4)
    def epoch(self, e: int) -> list[list[int]]:
        batches = []
        for n, b in enumerate(self.keys):
            items = self.groups[b]
            order = [items[i] for i in np.random.default_rng([self.seed, e, n]).permutation(len(items))]
            count = math.ceil(len(order) / self.batch_size)
            padded = (order * math.ceil(count * self.batch_size / len(order)))[:count * self.batch_size]
            batches += [padded[i * self.batch_size:(i + 1) * self.batch_size] for i in range(count)]
        return [batches[i] for i in np.random.default_rng([self.seed, e]).permutation(len(batches))]

    def batch(self, k: int) -> list[int]:
        e, offset = divmod(k, self.per_epoch)
        return self.epoch(e)[offset]

    def item(self, k: int, position: int) -> int:
        """The item at `position` of batch k (a position past the batch counts on into later batches)."""
        extra, position = divmod(position, self.batch_size)
        return self.batch(k + extra)[position]
