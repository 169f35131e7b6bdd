"""Video files in and out: MP4 (PyAV, H.264), GIF (Pillow), PNG contact sheets; atomic writes."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import VidiffError

# file suffixes: what vidiff writes, and what it reads as videos and as images (one list each, here)
OUTPUT_SUFFIXES = (".mp4", ".gif", ".png")        # .png: a contact sheet
VIDEO_INPUTS = (".mp4", ".gif", ".webm", ".mov", ".mkv", ".avi")
IMAGE_INPUTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def unit_range(x: torch.Tensor) -> torch.Tensor:
    """Pixel values 0..255 -> [-1, 1], the range every model reads."""
    return x / 127.5 - 1.0


def from_uint8(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(T, H, W, C) uint8 frames -> (C, T, H, W) float32 in [-1, 1]; to_uint8 is its inverse."""
    x = frames if torch.is_tensor(frames) else torch.from_numpy(np.array(frames))   # a copy: read-only arrays too
    return unit_range(x.permute(3, 0, 1, 2).float())


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """(B, C, T, H, W) or (C, T, H, W) floats in [-1, 1] -> (B, T, H, W, C) / (T, H, W, C) uint8."""
    x = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    return (x.permute(0, 2, 3, 4, 1) if x.ndim == 5 else x.permute(1, 2, 3, 0)).numpy()


def tile(videos: np.ndarray, columns: int | None = None, gap: int = 1) -> np.ndarray:
    """(B, T, H, W, C) -> one (T, H', W', C) video laid out as a grid with gray gaps."""
    b, t, h, w, c = videos.shape
    columns = columns or b
    rows = -(-b // columns)
    grid = np.full((t, rows * (h + gap) - gap, columns * (w + gap) - gap, c), 64, np.uint8)
    for i, v in enumerate(videos):
        r, k = divmod(i, columns)
        grid[:, r * (h + gap): r * (h + gap) + h, k * (w + gap): k * (w + gap) + w] = v
    return grid


def contact_sheet(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, C) -> one image with the frames left to right."""
    return tile(frames[:, None])[0]


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement so small videos are visible in players."""
    return frames if factor == 1 else frames.repeat(factor, axis=1).repeat(factor, axis=2)


def check_writable(path: Path, overwrite: bool) -> None:
    """Fail early, before minutes of sampling, if `path` cannot or must not be written."""
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise VidiffError(f"cannot write '{path}': use one of the suffixes {', '.join(OUTPUT_SUFFIXES)}")
    if path.exists() and not overwrite:
        raise VidiffError(f"'{path}' already exists; choose another path or pass --overwrite")
    if not path.parent.is_dir():
        raise VidiffError(f"cannot write '{path}': folder '{path.parent}' does not exist")
    if path.is_dir():
        raise VidiffError(f"cannot write '{path}': it is a folder; name a file")
    try:                        # os.access says yes to root everywhere, and /proc still refuses new files
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise VidiffError(f"cannot write '{path}': {e.strerror.lower() if e.strerror else e}") from None


def save_video(frames: np.ndarray, path: str | Path, fps: int = 8, overwrite: bool = False) -> Path:
    """Write (T, H, W, 3) uint8 frames as .mp4, .gif or a .png contact sheet.

    The file appears only once complete (temp file + rename), so a failed write never leaves a
    truncated file or destroys an existing one.
    """
    path = Path(path)
    check_writable(path, overwrite)
    fd, tmp = tempfile.mkstemp(suffix=path.suffix, dir=path.parent, prefix=f".{path.stem}.")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's private 0600 is wrong for a user's output file
    try:
        {".mp4": _write_mp4, ".gif": _write_gif, ".png": _write_png}[path.suffix.lower()](frames, tmp, fps)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _write_mp4(frames: np.ndarray, path: str, fps: int) -> None:
    import av
    t, h, w, _ = frames.shape
    pad_h, pad_w = h % 2, w % 2  # yuv420p needs even sizes
    frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    with av.open(path, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w + pad_w, h + pad_h, "yuv420p"
        stream.options = {"crf": "15"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())


def _write_gif(frames: np.ndarray, path: str, fps: int) -> None:
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:],
                   duration=round(1000 / fps), loop=0, optimize=False)


def _write_png(frames: np.ndarray, path: str, fps: int) -> None:
    Image.fromarray(contact_sheet(frames)).save(path, format="PNG")


def read_video(path: str | Path) -> np.ndarray:
    """Decode a video file to (T, H, W, 3) uint8 with PyAV; a broken file is a VidiffError."""
    import av
    path = Path(path)
    if path.is_dir():
        raise VidiffError(f"'{path}' is a folder; give a video file")
    if not path.is_file():
        raise VidiffError(f"video '{path}' not found")
    try:
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.error.FFmpegError, IndexError, ValueError) as e:
        # FFmpeg errors print as "[Errno 1094995529] Invalid data ...": keep the words, not the code
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise VidiffError(f"cannot decode video '{path}': {reason.lower()} (is it a complete video file?)") from None
    if not frames:
        raise VidiffError(f"video '{path}' has no decodable frames")
    return np.stack(frames)
