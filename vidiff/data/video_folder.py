"""Folders of real videos and images with captions, decoded with PyAV.

    data: {type: folder, frames: 16, size: 64, folder: {path: my_clips/, frame_stride: 2, crop: random}}

Captions come from captions.csv (columns path,caption) or captions.jsonl ({"path", "caption"}) in the
folder ("file" is accepted for "path"), or a <name>.txt beside each file. `folder.sources` adds more
directories, each with its own repeats, frame targets and stride. Videos (mp4, webm, mov, mkv, avi,
gif) give clips taken every `frame_stride` source frames (or at `fps`) of the longest frame target
they hold (`folder.frames`, else `frames`); images (png, jpg, webp) are 1-frame videos, gathered into
their own batches every `image_every` batches (joint image-video training). Each clip keeps its aspect
ratio at about size x size pixels (buckets.py: no square crops, no upscaling), and a batch holds one
bucket. `vidiff train-vae` reads the same folders without needing captions.

Files are checked once when the dataset opens: a zero-byte, corrupt, truncated, unreadable, too short or
too small file, or a caption with words outside the model's vocabulary, is skipped with a warning naming
it and a count in the run summary. A file that fails later, while decoding, is skipped too and the
next good file of its bucket takes its place, so one bad file never stops a run and garbage never
reaches the model. Batch k is a pure function of (seed, k), so resumed runs see the same data. With
`fixed_clips` the start frame and crop depend only on (seed, file): each file always gives the same
clip, which lets latent training encode it once (a trade of augmentation for speed, as in
precomputed-latent pipelines).
"""
from __future__ import annotations

import csv
import json
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from av.error import FFmpegError
from PIL import Image

from ..config import Config, DataConfig, load_config
from .buckets import BatchSchedule, Bucket, bucket_size, frame_bucket
from .io import IMAGE_INPUTS, VIDEO_INPUTS, unit_range
from ..errors import VidiffError

# what a broken or truncated file makes PyAV and Pillow raise (a bug in our own code is none of these,
# so it stops the run instead of skipping every file as "decode failed")
DECODE_ERRORS = (FFmpegError, OSError, EOFError, ValueError, SyntaxError, Image.DecompressionBombError, VidiffError)



@dataclass
class Entry:
    path: Path
    caption: str
    kind: str            # "video" | "image" (a clip of one frame)
    frames: int = 1      # decodable frames (videos)
    fps: float = 0.0
    height: int = 0
    width: int = 0
    source: int = 0      # which of the dataset's directories
    clip_frames: int = 1     # its frame bucket: the frames of its clips
    stride: int = 1          # source frames between clip frames


@dataclass
class Source:
    folder: Path
    repeats: int
    targets: list[int]   # target frame counts (frame buckets)
    stride: int


def sources_of(cfg: DataConfig) -> list[Source]:
    """data.folder.path and each of data.folder.sources, with their repeats, frame targets and strides."""
    f = cfg.folder
    targets = f.frames or [cfg.frames]
    found = [Source(Path(f.path), 1, targets, f.frame_stride)] if f.path else []
    found += [Source(Path(s.path), s.repeats, s.frames or targets, s.frame_stride or f.frame_stride) for s in f.sources]
    for s in found or [Source(Path(f.path), 1, targets, 1)]:
        if not f.path and not found or not s.folder.is_dir():
            raise VidiffError(f"data.folder.path '{s.folder if found else ''}' is not a folder; point it at a folder "
                              "of videos/images")
    return found


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


def probe_video(path: Path) -> tuple[int, float, int, int]:
    """(decodable frame count, frames per second, height, width); raises on anything unreadable."""
    import av
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        count, size = 0, (0, 0)
        for frame in container.decode(video=0):   # headers lie about truncated files: count
            count, size = count + 1, (frame.height, frame.width)
    return count, fps, *size


def check_file(path: Path, caption: str | None, vocab: set[str] | None) -> tuple[Entry | None, str]:
    """An Entry for a readable file (its clip length is the dataset's to choose), or None and the
    reason it is skipped."""
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
                width, height = image.size
            return Entry(path, caption, "image", height=height, width=width), ""
        frames, fps, height, width = probe_video(path)
    except DECODE_ERRORS as e:
        return None, f"unreadable: {str(e).splitlines()[0][:120] if str(e) else type(e).__name__}"
    return Entry(path, caption, "video", frames, fps, height, width), ""


CROPS = ("center", "random")


class VideoFolderDataset(torch.utils.data.Dataset):
    def __init__(self, cfg: DataConfig, vocab: list[str] | None = None, warn: bool = True, require_files: bool = True,
                 captions: bool = True, multiple: int = 8):
        """multiple: what the model needs each side of a clip to be a multiple of (set_multiple changes it)."""
        self.cfg, self.sources = cfg, sources_of(cfg)
        self.readable: list[Entry] = []
        self.skipped: list[tuple[str, str]] = []
        vocab_set = {w.lower() for w in vocab} if vocab is not None else None
        for n, source in enumerate(self.sources):
            folder = source.folder
            table = read_caption_table(folder)
            files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_INPUTS + IMAGE_INPUTS)
            for path in files:
                caption = caption_for(table, folder, path)
                if caption is None and not captions:
                    caption = ""
                entry, reason = check_file(path, caption, vocab_set)
                if entry is None:
                    self.skip(self.name(path, n), reason, warn)
                else:
                    entry.source = n
                    self.readable.append(entry)
        self.warn = warn
        self.set_multiple(multiple)
        if require_files and not self.entries:
            first = f"; the first: {self.skipped[0][0]}: {self.skipped[0][1]}" if self.skipped else ""
            raise VidiffError(f"no usable videos or images in '{self.sources[0].folder}' ({len(self.skipped)} skipped"
                              f"{first}); run `vidiff data check {self.sources[0].folder}` to see them all")

    def name(self, path: Path, source: int) -> str:
        folder = self.sources[source].folder
        return str(path.relative_to(folder)) if len(self.sources) == 1 else str(folder / path.relative_to(folder))

    def set_multiple(self, multiple: int) -> None:
        """Each readable file's bucket for a model whose clip sides are multiples of `multiple`: its frame
        bucket (the longest target its length holds at its stride) and its size; too short or too small
        files are skipped."""
        self.multiple, self.entries, self._schedules = multiple, [], {}
        self.skipped = [s for s in self.skipped if not s[1].startswith(("too short", "too small"))]
        area = self.cfg.size ** 2
        for entry in self.readable:
            source = self.sources[entry.source]
            name = self.name(entry.path, entry.source)
            if entry.kind == "video":
                entry.stride = self.stride_for(entry.fps, source.stride)
                clip = frame_bucket(entry.frames, source.targets, entry.stride)
                if clip is None:
                    shortest = min(source.targets)
                    self.skip(name, f"too short: {entry.frames} decodable frames, a clip of {shortest} frames at "
                                    f"stride {entry.stride} needs {(shortest - 1) * entry.stride + 1}", self.warn)
                    continue
                entry.clip_frames = clip
            if bucket_size(entry.height, entry.width, area, multiple) is None:
                self.skip(name, f"too small: {entry.height}x{entry.width}, each side needs at least {multiple} px",
                          self.warn)
                continue
            self.entries.append(entry)
        self.videos = [e for e in self.entries if e.clip_frames > 1]
        self.images = [e for e in self.entries if e.clip_frames == 1]
        # each file as often as its directory's repeats
        self.pools = {kind: [e for e in pool for _ in range(self.sources[e.source].repeats)]
                      for kind, pool in (("video", self.videos), ("image", self.images))}

    def fit(self, multiple: int, time_factor: int = 1, latent_multiple: int = 1) -> None:
        """Bucket for a model whose clip sides are multiples of `multiple` and whose clips have 1 + time_factor*k
        frames (a causal VAE's rule), the latent frame count a multiple of `latent_multiple`: a frame target
        that does not fit is a one-line error."""
        for source in self.sources:
            for frames in source.targets:
                latent = 1 + (frames - 1) // time_factor if time_factor > 1 else frames
                if (frames - 1) % time_factor or latent % latent_multiple:
                    raise VidiffError(f"frame target {frames} of '{source.folder}' does not fit the model: it takes "
                                      f"1 + {time_factor}k frames" + (f", {latent_multiple}k after the VAE"
                                                                       if latent_multiple > 1 else ""))
        self.set_multiple(multiple)

    def bucket(self, entry: Entry) -> Bucket:
        return (entry.clip_frames, *bucket_size(entry.height, entry.width, self.cfg.size ** 2, self.multiple))

    def buckets(self) -> Counter:
        """Clips per bucket in an epoch (repeats counted)."""
        return Counter(self.bucket(e) for pool in self.pools.values() for e in pool)

    def schedule(self, kind: str, batch_size: int) -> BatchSchedule:
        if (kind, batch_size) not in self._schedules:
            self._schedules[kind, batch_size] = BatchSchedule([self.bucket(e) for e in self.pools[kind]],
                                                              self.cfg.seed, batch_size)
        return self._schedules[kind, batch_size]

    def check(self) -> "VideoFolderDataset":
        """Decode one clip of every usable file, as training would; those that fail move to `skipped`
        (what `vidiff data check` reports)."""
        for entry in list(self.entries):
            try:
                self.load(entry, np.random.default_rng(0))
            except DECODE_ERRORS as e:
                self.skip(self.name(entry.path, entry.source), f"decode failed: {str(e).splitlines()[0][:120]}", warn=False)
                self.readable.remove(entry)
        self.set_multiple(self.multiple)
        return self

    def skip(self, name: str, reason: str, warn: bool = True) -> None:
        self.skipped.append((name, reason))
        if warn:
            warnings.warn(f"skipping {name}: {reason}", stacklevel=2)

    def stride_for(self, fps: float, stride: int) -> int:
        return max(1, round(fps / self.cfg.folder.fps)) if self.cfg.folder.fps > 0 else stride

    def __len__(self) -> int:
        return len(self.entries)

    def kind_of_batch(self, micro_index: int) -> str:
        if not self.images:
            return "video"
        if not self.videos:
            return "image"
        every = self.cfg.folder.image_every
        return "image" if every > 0 and micro_index % every == every - 1 else "video"

    def kind_index(self, micro_index: int, kind: str) -> int:
        """Micro-batch `micro_index`'s place among the batches of its kind (every image_every-th is images)."""
        every = self.cfg.folder.image_every
        if not (self.images and self.videos and every > 0):
            return micro_index
        return micro_index // every if kind == "image" else micro_index - micro_index // every

    def caption_words(self) -> list[str]:
        """Every word the usable files' captions use, sorted: a vocabulary for model.text.vocab."""
        return sorted({w for e in self.entries for w in e.caption.lower().split()})

    def cache_keys(self, batch: dict) -> list:
        """Keys under which a batch's clips recur unchanged (folder.fixed_clips: one clip per file), for a
        cache of their latents; [] otherwise (random clips and crops)."""
        return list(batch["path"]) if self.cfg.folder.fixed_clips else []

    def entry(self, micro_index: int, position: int, batch_size: int, attempt: int = 0) -> Entry:
        """The file at `position` of global micro-batch `micro_index` (`attempt` > 0: the next ones of the
        same bucket, which stand in for a file that fails to decode)."""
        kind = self.kind_of_batch(micro_index)
        schedule, pool = self.schedule(kind, batch_size), self.pools[kind]
        first = schedule.item(self.kind_index(micro_index, kind), position)
        group = schedule.groups[self.bucket(pool[first])]
        return pool[group[(group.index(first) + attempt) % len(group)]]

    def item(self, micro_index: int, position: int, batch_size: int) -> dict:
        """Sample `position` of global micro-batch `micro_index`: every sample of a micro-batch comes from
        one bucket, so they stack."""
        index = micro_index * batch_size + position
        size = len(self.pools[self.kind_of_batch(micro_index)])
        for attempt in range(size):
            entry = self.entry(micro_index, position, batch_size, attempt)
            rng = np.random.default_rng([self.cfg.seed, zlib.crc32(str(entry.path).encode())] if self.cfg.folder.fixed_clips
                                        else [self.cfg.seed, index, attempt])
            try:
                video = self.load(entry, rng)
            except DECODE_ERRORS as e:                 # decoding failed after a good probe: skip, take the next
                self.skip(str(entry.path.name), f"decode failed: {str(e).splitlines()[0][:120] if str(e) else type(e).__name__}")
                continue
            return {"video": video, "caption": entry.caption, "path": str(entry.path)}
        raise VidiffError(f"every {self.kind_of_batch(micro_index)} in '{self.sources[0].folder}' failed to decode")

    def __getitem__(self, index: int) -> dict:
        return self.item(0, index, 1)

    def load(self, entry: Entry, rng: np.random.Generator) -> torch.Tensor:
        """One clip of `entry` at its bucket: (C, clip_frames, h, w) in [-1, 1]."""
        if entry.kind == "image":
            with Image.open(entry.path) as image:
                frames = np.array(image.convert("RGB"))[None]
        else:
            frames = self.decode_clip(entry, rng)
        video = torch.from_numpy(np.array(frames)).permute(3, 0, 1, 2).float()   # (C, T, H, W)
        _, height, width = bucket = self.bucket(entry)
        video = unit_range(self.crop_resize(video, height, width, rng))
        if not torch.isfinite(video).all() or video.shape[1:] != bucket:
            raise ValueError(f"decoded to an unexpected tensor {tuple(video.shape)}")
        return video

    def decode_clip(self, entry: Entry, rng: np.random.Generator) -> np.ndarray:
        import av
        frames_wanted, stride = entry.clip_frames, entry.stride
        span = (frames_wanted - 1) * stride + 1
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
        if len(frames) != frames_wanted:
            raise ValueError(f"got {len(frames)} of {frames_wanted} frames")
        return np.stack(frames)

    def crop_resize(self, video: torch.Tensor, height: int, width: int, rng: np.random.Generator) -> torch.Tensor:
        """Scale down (antialiased) until the clip just covers height x width, then a centre or random crop
        of that size: a bucket has the file's aspect ratio up to rounding, so little is cut."""
        _, _, h, w = video.shape
        scale = max(height / h, width / w)
        nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
        if (nh, nw) != (h, w):
            video = F.interpolate(video.transpose(0, 1), size=(nh, nw), mode="bilinear", antialias=True,
                                  align_corners=False).transpose(0, 1).clamp(0, 255)
        if self.cfg.folder.crop == "random":
            top, left = int(rng.integers(0, nh - height + 1)), int(rng.integers(0, nw - width + 1))
        else:
            top, left = (nh - height) // 2, (nw - width) // 2
        return video[:, :, top:top + height, left:left + width]


def check_folder(folder: Path | None, config: Path | None = None, frames: int | None = None,
                 frame_stride: int | None = None, decode: bool = True, multiple: int = 8) -> VideoFolderDataset:
    """`vidiff data check`: the dataset training would build from `folder` (None: the recipe's
    data.folder path and sources; clip length, stride, buckets and vocabulary from a recipe if given,
    no vocabulary for a pretrained model's; its `skipped` says which files it would skip and why), with
    one clip of every file decoded if `decode`; buckets at sides that are multiples of `multiple`.
    Nothing is warned: the caller reports `skipped`."""
    cfg = load_config(config) if config is not None else Config()
    data = cfg.data
    if folder is None and not (data.folder.path or data.folder.sources):
        raise VidiffError("name a FOLDER, or a --config whose data.folder has a path or sources")
    data.type = "folder"
    data.folder.path = str(folder) if folder is not None else data.folder.path
    data.frames = frames if frames is not None else data.frames
    data.folder.frame_stride = frame_stride if frame_stride is not None else data.folder.frame_stride
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vocab = cfg.model.text.vocab if config is not None and not cfg.model.pretrained else None   # a pretrained
        dataset = VideoFolderDataset(data, vocab, warn=False, require_files=False,   # text encoder reads free text
                                     multiple=multiple)
        if decode:
            dataset.check()
    return dataset
