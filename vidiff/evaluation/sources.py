"""Where videos to evaluate come from: a folder, the synthetic ground truth, or a model's samples."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..config import DataConfig
from ..data import ShapesDataset, unit_stride
from ..data.io import VIDEO_INPUTS, read_video, save_video, to_uint8, upscale
from ..data.splits import HELD_OUT
from ..distributed import Dist, gather_objects
from ..data.video_folder import caption_for, read_caption_table
from ..errors import VidiffError
from ..pipeline import SampleOptions

# MP4 keeps colour at half resolution (yuv420p): at 32 px that smears the colour of every edge, and a
# ground-truth clip written at 1x fails the viewer check 1 time in 5 when read back. Written 4x larger
# (as `vidiff generate` does) and scored at the world's size, a file scores like its frames.
SAVE_SCALE = 4
IMAGE_FILES = (".png", ".jpg", ".jpeg")


def load_folder(folder: str | Path) -> tuple[list[str], list[np.ndarray], list[str | None], list[tuple[str, str]]]:
    """Videos in a folder: video files, and subfolders of frame images (one video each). Files that
    cannot be read are skipped and returned as (name, reason), as training and `data check` do."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VidiffError(f"'{folder}' is not a folder of videos")
    captions = read_caption_table(folder)   # captions.jsonl/csv, rows keyed by 'path' or 'file'
    names, videos, texts, skipped = [], [], [], []
    entries = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_INPUTS or p.is_dir())
    for path in tqdm(entries, desc="read", leave=False):
        try:
            if path.is_dir():
                images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_FILES)
                if not images:
                    continue
                video = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in images])
            else:
                video = read_video(path)
        except (VidiffError, OSError, ValueError) as e:    # broken file, unreadable image, mixed frame sizes
            skipped.append((path.name, str(e)))
            continue
        names.append(path.name)
        videos.append(video)
        texts.append(caption_for(captions, folder, path))
    if not videos:
        raise VidiffError(f"no readable videos in '{folder}' ({len(skipped)} skipped; looked for "
                          f"{', '.join(VIDEO_INPUTS)} and frame folders)")
    return names, videos, texts, skipped


def ground_truth(cfg: DataConfig, num: int, offset: int = HELD_OUT) -> tuple[list[str], list[np.ndarray], list[str]]:
    """Held-out clips of the synthetic world; `offset` picks a disjoint set (e.g. an FVD reference)."""
    data = ShapesDataset(cfg)
    items = [data[offset + i] for i in range(num)]
    return [f"truth_{i:04d}" for i in range(num)], [to_uint8(it["video"]) for it in items], [it["caption"] for it in items]


def model_samples(pipe, num: int | list[str], seed: int, options: SampleOptions, save_to: Path | None = None,
                  dist=None) -> tuple[list[str], list[np.ndarray], list[str]]:
    """Generate a video for each of `num` held-out captions of the model's own data distribution, or
    for each prompt of a list `num` (a model of any world), seed + i each.

    Under torchrun (`dist` from vidiff.distributed.process_group) rank r makes videos r, r + N, ...
    and every rank gets all of them back in order: the distributed sampler for evaluation."""
    if isinstance(num, list):
        captions = num
    elif pipe.config is None or pipe.config.data.type != "shapes":
        raise VidiffError(f"{pipe.bundle.name} has no held-out prompts of a world of its own; give the prompts to "
                          "sample (--prompts FILE, one a line)")
    else:
        data = ShapesDataset(unit_stride(pipe.config.data))
        captions = [data[HELD_OUT + i]["caption"] for i in range(num)]
    quiet = replace(options, progress=False)
    return _make(lambda i, g: pipe(captions[i], generator=g, sampling=quiet, output_type="uint8").pixels[0],
                 len(captions), seed, captions, save_to, dist)


def continued_samples(pipe, num: int, seed: int, options: SampleOptions, known: int, save_to: Path | None = None,
                      dist=None) -> tuple[list[str], list[np.ndarray], list[str], list]:
    """The physics benchmark's protocol (Kang et al. 2025): the model is given the first `known` frames
    of held-out ground-truth clips of its world and makes the rest (`VideoPipeline.extend`). Returns
    model_samples' lists and each clip's ground-truth tracks (data.synthetic.ObjectTrack), to score
    the continuation against the simulator."""
    if pipe.config is None or pipe.config.data.type != "shapes":
        raise VidiffError("--known continues ground-truth clips of the shapes world: a model of that world only")
    frames = pipe.config.data.frames
    if not 1 <= known < frames:
        raise VidiffError(f"--known takes 1 to {frames - 1} given frames (the model makes {frames}), got {known}")
    data = ShapesDataset(unit_stride(pipe.config.data))
    items = [data[HELD_OUT + i] for i in range(num)]
    captions = [it["caption"] for it in items]
    names, videos, captions = _make(
        lambda i, g: pipe.extend(to_uint8(items[i]["video"])[:known], captions[i], frames, generator=g,
                                 sampling=replace(options, progress=False), context=known).pixels[0],
        num, seed, captions, save_to, dist)
    return names, videos, captions, [it["tracks"] for it in items]


def _make(sample, num: int, seed: int, captions: list[str], save_to: Path | None, dist) -> tuple[list[str], list[np.ndarray], list[str]]:
    """sample(i, generator) for i < num, split over the processes and gathered in order; saved with captions."""
    dist = dist or Dist()
    mine = []
    for i in tqdm(range(dist.rank, num, dist.world), desc="generate", leave=False, disable=not dist.main):
        # one generator per sample keeps each video independent of the batch size and process count
        mine.append((i, sample(i, torch.Generator().manual_seed(seed + i))))
    videos = [video for _, video in sorted(gather_objects(mine, dist), key=lambda pair: pair[0])]
    names = [f"sample_{i:04d}.mp4" for i in range(num)]
    if save_to is not None and dist.main:
        save_to.mkdir(parents=True, exist_ok=True)
        for name, video, caption in zip(names, videos, captions):
            save_video(upscale(video, SAVE_SCALE), save_to / name, overwrite=True)
        (save_to / "captions.jsonl").write_text(
            "".join(json.dumps({"file": n, "caption": c}) + "\n" for n, c in zip(names, captions)))
    return names, videos, captions
