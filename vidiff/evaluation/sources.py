"""Where videos to evaluate come from: a folder, the synthetic ground truth, or a model's samples."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..config import DataConfig
from ..data import ShapesDataset
from ..data.io import read_video, save_video, to_uint8
from ..data.video_folder import read_caption_table
from ..errors import VidiffError

VIDEO_FILES = (".mp4", ".gif", ".webm", ".mov", ".mkv", ".avi")
IMAGE_FILES = (".png", ".jpg", ".jpeg")
HELD_OUT = 10**9   # sample indices far beyond any training stream


def load_folder(folder: str | Path) -> tuple[list[str], list[np.ndarray], list[str | None]]:
    """Videos in a folder: video files, and subfolders of frame images (one video each)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VidiffError(f"'{folder}' is not a folder of videos")
    captions = read_caption_table(folder)   # captions.jsonl/csv, rows keyed by 'path' or 'file'
    names, videos, texts = [], [], []
    entries = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_FILES or p.is_dir())
    for path in tqdm(entries, desc="read", leave=False):
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_FILES)
            if not images:
                continue
            video = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in images])
        else:
            video = read_video(path)
        sidecar = path.with_suffix(".txt")
        names.append(path.name)
        videos.append(video)
        texts.append(captions.get(path.name) or (sidecar.read_text().strip() if sidecar.is_file() else None))
    if not videos:
        raise VidiffError(f"no videos in '{folder}' (looked for {', '.join(VIDEO_FILES)} and frame folders)")
    return names, videos, texts


def ground_truth(cfg: DataConfig, num: int, offset: int = 0) -> tuple[list[str], list[np.ndarray], list[str]]:
    """Held-out clips of the synthetic world; `offset` picks a disjoint set (e.g. an FVD reference)."""
    data = ShapesDataset(cfg)
    items = [data[HELD_OUT + offset + i] for i in range(num)]
    return [f"truth_{i:04d}" for i in range(num)], [to_uint8(it["video"]) for it in items], [it["caption"] for it in items]


def model_samples(pipe, num: int, seed: int, steps: int, guidance: float, sampler: str,
                  save_to: Path | None = None, dist=None) -> tuple[list[str], list[np.ndarray], list[str]]:
    """Generate `num` videos for held-out captions of the model's own data distribution, seed + i each.

    Under torchrun (`dist` from training.distributed.init_distributed) rank r makes videos r, r + N, ...
    and every rank gets all of them back in order: the distributed sampler for evaluation."""
    from ..training.distributed import Dist, gather_objects
    dist = dist or Dist()
    data = ShapesDataset(pipe.config.data)
    captions = [data[HELD_OUT + i]["caption"] for i in range(num)]
    mine = []
    for i in tqdm(range(dist.rank, num, dist.world), desc="generate", leave=False, disable=not dist.main):
        # one generator per sample keeps each video independent of the batch size and process count
        g = torch.Generator().manual_seed(seed + i)
        mine.append((i, pipe(captions[i], num_inference_steps=steps, guidance_scale=guidance,
                             sampler=sampler, generator=g, progress=False).frames[0]))
    videos = [video for _, video in sorted(gather_objects(mine, dist), key=lambda pair: pair[0])]
    names = [f"sample_{i:04d}.mp4" for i in range(num)]
    if save_to is not None and dist.main:
        save_to.mkdir(parents=True, exist_ok=True)
        for name, video, caption in zip(names, videos, captions):
            save_video(video, save_to / name, overwrite=True)
        (save_to / "captions.jsonl").write_text(
            "".join(json.dumps({"file": n, "caption": c}) + "\n" for n, c in zip(names, captions)))
    return names, videos, captions
