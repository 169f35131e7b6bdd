"""A folder of real videos and images with captions, decoded with PyAV.

    data: {type: folder, path: my_clips/, frames: 16, size: 64, frame_stride: 2, crop: random}

Captions come from captions.csv (columns path,caption) or captions.jsonl ({"path", "caption"}) in the
folder ("file" is accepted for "path"), or a <name>.txt beside each file. Videos (mp4, webm, mov,
mkv, avi, gif) give clips of `frames` frames taken every `frame_stride` source frames (or at
`fps`); images (png, jpg, webp) are 1-frame videos, gathered into their own batches every
`image_every` batches (joint image-video training), since a batch holds one frame count.
`vidiff train-vae` reads the same folders without needing captions.

Files are checked once when the dataset opens: a zero-byte, corrupt, truncated, unreadable or too
short file, or a caption with words outside the model's vocabulary, is skipped with a warning naming
it and a count in the run summary. A file that fails later, while decoding, is skipped too and the
next good file takes its place, so one bad file never stops a run and garbage never reaches the model.
Item i is a pure function of (seed, i), so resumed runs see the same data. With `fixed_clips` the start
frame and crop depend only on (seed, file): each file always gives the same clip, which lets latent
training encode it once (a trade of augmentation for speed, as in precomputed-latent pipelines).
"""
from __future__ import annotations

import csv
import json
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from av.error import FFmpegError
from PIL import Image

from ..config import Config, DataConfig, load_config
from .io import IMAGE_INPUTS, VIDEO_INPUTS, unit_range
from ..errors import VidiffError

# what a broken or truncated file makes PyAV and Pillow raise (a bug in our own code is none of these,
# so it stops the run instead of skipping every file as "decode failed")
DECODE_ERRORS = (FFmpegError, OSError, EOFError, ValueError, SyntaxError, Image.DecompressionBombError, VidiffError)



@dataclass
class Entry:
    path: Path
    caption: str
    kind: str            # "video" | "image"
    frames: int = 1      # decodable frames (videos)
    fps: float = 0.0


def read_caption_table(folder: Path) -> dict[str, str]:
    """Captions by relative path from captions.csv / captions.jsonl (either may be absent)."""
    table: dict[str, str] = {}
    jsonl, csv_path = folder / "captions.jsonl", folder / "captions.csv"
    if jsonl.is_file():
        for n, line in enumerate(jsonl.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                table[row.get("path", row.get("file"))] = str(row["caption"])
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                raise VidiffError(f"{jsonl} line {n}: expected {{\"path\": ..., \"caption\": ...}}") from None
    if csv_path.is_file():
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            key = "path" if "path" in (reader.fieldnames or []) else "file"
            if key not in (reader.fieldnames or []) or "caption" not in reader.fieldnames:
                raise VidiffError(f"{csv_path} needs the columns 'path' and 'caption'")
            for row in reader:
                table[row[key]] = row["caption"] or ""
    return table


def caption_for(table: dict[str, str], folder: Path, path: Path) -> str | None:
    """A file's caption: its row in the caption table (by path relative to the folder, or by name),
    else its <name>.txt sidecar, else None."""
    caption = table.get(str(path.relative_to(folder)), table.get(path.name))
    sidecar = path.with_suffix(".txt")
    if caption is None and sidecar.is_file():
        caption = sidecar.read_text().strip()
    return caption


def probe_video(path: Path) -> tuple[int, float]:
    """(decodable frame count, frames per second); raises on anything unreadable."""
    import av
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        count = sum(1 for _ in container.decode(video=0))   # headers lie about truncated files: count
    return count, fps


def check_file(path: Path, caption: str | None, needed: int, vocab: set[str] | None) -> tuple[Entry | None, str]:
    """An Entry for a usable file, or None and the reason it is skipped."""
    if caption is None:                                 # (the VAE, which needs no captions, passes "")
        return None, "no caption (captions.csv/jsonl row or .txt file)"
    unknown = sorted({w for w in caption.lower().split()} - vocab) if vocab is not None else []
    if unknown:
        return None, f"caption word '{unknown[0]}' is not in model.text.vocab"
    try:
        if path.stat().st_size == 0:
            return None, "empty file (0 bytes)"
        if path.suffix.lower() in IMAGE_INPUTS:
            with Image.open(path) as image:
                image.load()
            return Entry(path, caption, "image"), ""
        frames, fps = probe_video(path)
    except DECODE_ERRORS as e:
        return None, f"unreadable: {str(e).splitlines()[0][:120] if str(e) else type(e).__name__}"
    if frames < needed:
        return None, f"too short: {frames} decodable frames, a clip needs {needed}"
    return Entry(path, caption, "video", frames, fps), ""


CROPS = ("center", "random")


class VideoFolderDataset(torch.utils.data.Dataset):
    def __init__(self, cfg: DataConfig, vocab: list[str] | None = None, warn: bool = True, require_files: bool = True,
                 captions: bool = True):
        self.cfg = cfg
        folder = Path(cfg.folder.path)
        if not cfg.folder.path or not folder.is_dir():
            raise VidiffError(f"data.folder.path '{cfg.folder.path}' is not a folder; point it at a folder of videos/images")
        table = read_caption_table(folder)
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_INPUTS + IMAGE_INPUTS)
        self.entries: list[Entry] = []
        self.skipped: list[tuple[str, str]] = []
        vocab_set = {w.lower() for w in vocab} if vocab is not None else None
        for path in files:
            rel = str(path.relative_to(folder))
            caption = caption_for(table, folder, path)
            if caption is None and not captions:
                caption = ""
            entry, reason = check_file(path, caption, self.frames_needed(path), vocab_set)
            if entry is None:
                self.skip(rel, reason, warn)
            else:
                self.entries.append(entry)
        self.videos = [e for e in self.entries if e.kind == "video"]
        self.images = [e for e in self.entries if e.kind == "image"]
        if require_files and not self.videos and not self.images:
            first = f"; the first: {self.skipped[0][0]}: {self.skipped[0][1]}" if self.skipped else ""
            raise VidiffError(f"no usable videos or images in '{folder}' ({len(self.skipped)} skipped{first}); "
                              f"run `vidiff data check {folder}` to see them all")

    def check(self) -> "VideoFolderDataset":
        """Decode one clip of every usable file, as training would; those that fail move to `skipped`
        (what `vidiff data check` reports)."""
        folder = Path(self.cfg.folder.path)
        for entry in list(self.entries):
            try:
                self.load(entry, np.random.default_rng(0))
            except DECODE_ERRORS as e:
                self.skip(str(entry.path.relative_to(folder)), f"decode failed: {str(e).splitlines()[0][:120]}", warn=False)
                self.entries.remove(entry)
        self.videos = [e for e in self.entries if e.kind == "video"]
        self.images = [e for e in self.entries if e.kind == "image"]
        return self

    def skip(self, name: str, reason: str, warn: bool = True) -> None:
        self.skipped.append((name, reason))
        if warn:
            warnings.warn(f"skipping {name}: {reason}", stacklevel=2)

    def stride_for(self, fps: float) -> int:
        return max(1, round(fps / self.cfg.folder.fps)) if self.cfg.folder.fps > 0 else self.cfg.folder.frame_stride

    def frames_needed(self, path: Path) -> int:
        # fps-based strides depend on the file; they are re-checked at decode time
        return 1 if path.suffix.lower() in IMAGE_INPUTS else (self.cfg.frames - 1) * self.cfg.folder.frame_stride + 1

    def __len__(self) -> int:
        return len(self.entries)

    def kind_of_batch(self, micro_index: int) -> str:
        if not self.images:
            return "video"
        if not self.videos:
            return "image"
        every = self.cfg.folder.image_every
        return "image" if every > 0 and micro_index % every == every - 1 else "video"

    def caption_words(self) -> list[str]:
        """Every word the usable files' captions use, sorted: a vocabulary for model.text.vocab."""
        return sorted({w for e in self.entries for w in e.caption.lower().split()})

    def cache_keys(self, batch: dict) -> list:
        """Keys under which a batch's clips recur unchanged (folder.fixed_clips: one clip per file), for a
        cache of their latents; [] otherwise (random clips and crops)."""
        return list(batch["path"]) if self.cfg.folder.fixed_clips else []

    def item(self, micro_index: int, position: int, batch_size: int) -> dict:
        """Sample `position` of global micro-batch `micro_index`."""
        kind = self.kind_of_batch(micro_index)
        pool = self.videos if kind == "video" else self.images
        index = micro_index * batch_size + position
        for attempt in range(len(pool)):
            epoch, offset = divmod(index + attempt, len(pool))
            order = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(pool))   # reshuffle per epoch
            entry = pool[order[offset]]
            rng = np.random.default_rng([self.cfg.seed, zlib.crc32(str(entry.path).encode())] if self.cfg.folder.fixed_clips
                                        else [self.cfg.seed, index, attempt])
            try:
                video = self.load(entry, rng)
            except DECODE_ERRORS as e:                 # decoding failed after a good probe: skip, take the next
                self.skip(str(entry.path.name), f"decode failed: {str(e).splitlines()[0][:120] if str(e) else type(e).__name__}")
                continue
            return {"video": video, "caption": entry.caption, "path": str(entry.path)}
        raise VidiffError(f"every {kind} in '{self.cfg.folder.path}' failed to decode")

    def __getitem__(self, index: int) -> dict:
        return self.item(0, index, 1)

    def load(self, entry: Entry, rng: np.random.Generator) -> torch.Tensor:
        if entry.kind == "image":
            with Image.open(entry.path) as image:
                frames = np.array(image.convert("RGB"))[None]
        else:
            frames = self.decode_clip(entry, rng)
        video = torch.from_numpy(np.array(frames)).permute(3, 0, 1, 2).float()   # (C, T, H, W)
        video = unit_range(self.crop_resize(video, rng))
        if not torch.isfinite(video).all() or video.shape[1:] != (frames.shape[0], self.cfg.size, self.cfg.size):
            raise ValueError(f"decoded to an unexpected tensor {tuple(video.shape)}")
        return video

    def decode_clip(self, entry: Entry, rng: np.random.Generator) -> np.ndarray:
        import av
        stride = self.stride_for(entry.fps)
        span = (self.cfg.frames - 1) * stride + 1
        if entry.frames < span:
            raise ValueError(f"too short at stride {stride}: {entry.frames} frames, needs {span}")
        start = int(rng.integers(0, entry.frames - span + 1))
        wanted = set(range(start, start + span, stride))
        frames = []
        with av.open(str(entry.path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in wanted:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if i >= start + span - 1:
                    break
        if len(frames) != self.cfg.frames:
            raise ValueError(f"got {len(frames)} of {self.cfg.frames} frames")
        return np.stack(frames)

    def crop_resize(self, video: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Scale the short side to `size` (antialiased), then a centre or random square crop."""
        size = self.cfg.size
        _, _, h, w = video.shape
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        video = F.interpolate(video.transpose(0, 1), size=(nh, nw), mode="bilinear", antialias=True,
                              align_corners=False).transpose(0, 1).clamp(0, 255)
        if self.cfg.folder.crop == "random":
            top, left = int(rng.integers(0, nh - size + 1)), int(rng.integers(0, nw - size + 1))
        else:
            top, left = (nh - size) // 2, (nw - size) // 2
        return video[:, :, top:top + size, left:left + size]


def check_folder(folder: Path, config: Path | None = None, frames: int | None = None, frame_stride: int | None = None,
                 decode: bool = True) -> VideoFolderDataset:
    """`vidiff data check`: the dataset training would build from `folder` (clip length, stride and
    vocabulary from a recipe if given, none for a pretrained model's; its `skipped` says which files it would skip and why), with one
    clip of every file decoded if `decode`. Nothing is warned: the caller reports `skipped`."""
    cfg = load_config(config) if config is not None else Config()
    data = cfg.data
    data.type, data.folder.path = "folder", str(folder)
    data.frames = frames if frames is not None else data.frames
    data.folder.frame_stride = frame_stride if frame_stride is not None else data.folder.frame_stride
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vocab = cfg.model.text.vocab if config is not None and not cfg.model.pretrained else None   # a pretrained
        dataset = VideoFolderDataset(data, vocab, warn=False, require_files=False)   # text encoder reads free text
        if decode:
            dataset.check()
    return dataset
