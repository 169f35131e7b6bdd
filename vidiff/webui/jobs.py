"""The work behind each tab of `vidiff serve`, free of gradio: inputs in, file paths out, bad input
a VidiffError. Results go to a private temporary folder that keeps the last few requests and is
removed when the server stops."""
from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import threading
import uuid
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from ..config import DISPLAY_SCALE
from ..data.io import save_video, upscale
from ..errors import VidiffError
from ..pipeline import FrameConditioning, SampleOptions, VideoPipeline
from ..pipeline.checks import parse_size
from ..pipeline.inputs import as_frames
from .limits import Limits, inside, open_model_folders, run_folders

SCALE = DISPLAY_SCALE   # results are shown and downloaded enlarged, as the CLI and API write them
KEEP = 64          # request folders kept before the oldest are removed
CACHED = 2         # pipelines kept loaded (the default model and the last checkpoint asked for): each holds its
                   # weights on the device, and every "generate from checkpoint" would otherwise add one


class Jobs:
    def __init__(self, model: str | Path | None = None, runs: Path | None = None, limits: Limits | None = None,
                 device: str | None = None, dtype: str | None = None, compile: bool = False):
        self.default = model              # None: the embedded model
        self.runs = runs.resolve() if runs is not None else None
        self.limits = limits or Limits()
        self.load = dict(device=device, torch_dtype=dtype, compile=compile)
        self.cache: OrderedDict[str, VideoPipeline] = OrderedDict()   # least recently used first
        self.lock = threading.Lock()
        self.workdir = Path(tempfile.mkdtemp(prefix="vidiff-serve-"))
        atexit.register(shutil.rmtree, self.workdir, True)

    # models and runs -------------------------------------------------------------------------------
    def models(self) -> list[str]:
        """What the model picker offers: the default, the run folders and the diffusers-format model
        directories under --runs."""
        return ["default", *run_folders(self.runs), *open_model_folders(self.runs)]

    def run_names(self) -> list[str]:
        return run_folders(self.runs)

    def pipeline(self, name: str | None) -> VideoPipeline:
        name = name or "default"
        with self.lock:
            if name not in self.cache:
                path = self.default if name == "default" else inside(self.runs, name)
                pipe = VideoPipeline.from_pretrained(path, **self.load)
                while len(self.cache) >= CACHED:
                    self.cache.popitem(last=False)
                self.cache[name] = pipe
            self.cache.move_to_end(name)
            return self.cache[name]

    def defaults(self, name: str | None = None) -> tuple[int, float, str, str, int]:
        """(steps, guidance, sampler, spacing, frames) a model samples with by default."""
        pipe = self.pipeline(name)
        d = pipe.defaults()
        return d.steps, d.guidance, d.sampler, d.spacing, pipe.window

    def size(self, name: str | None = None) -> str:
        """The model's own frame size, HxW."""
        d = self.pipeline(name).bundle.defaults
        return f"{d.height}x{d.width}"

    def vocabulary(self, name: str | None = None) -> str:
        return self.pipeline(name).bundle.words

    def _folder(self) -> Path:
        old = sorted(self.workdir.iterdir(), key=lambda p: p.stat().st_mtime)
        for stale in old[:max(0, len(old) - KEEP)]:
            shutil.rmtree(stale, ignore_errors=True)
        folder = self.workdir / uuid.uuid4().hex
        folder.mkdir()
        return folder

    def _write(self, frames: np.ndarray, fps: int = 8) -> tuple[str, str, str]:
        """(mp4, gif, png contact sheet) of (T, H, W, 3) frames, enlarged for the page."""
        scale = max(1, min(SCALE, 1024 // max(frames.shape[1:3])))     # 32-px clips enlarged, 480x832 ones as they are
        folder, big = self._folder(), upscale(frames, scale)
        return tuple(str(save_video(big if suffix != ".png" else frames, folder / f"video{suffix}", fps=fps))
                     for suffix in (".mp4", ".gif", ".png"))

    def _upload(self, source, what: str) -> np.ndarray:
        if source is None:
            raise VidiffError(f"upload {what} first")
        return self.limits.check_frames(as_frames(source, what), what)

    # the tabs --------------------------------------------------------------------------------------
    def generate(self, prompt: str, model: str | None = "default", seed: int = 0, steps: int | None = None,
                 guidance: float | None = None, frames: int | None = None, sampler: str | None = None,
                 spacing: str | None = None, size: str | None = None):
        """Unset values (None, an empty size) are the model's own: its frames, size and sampling."""
        height, width = parse_size(size, "the size")
        self.limits.check_request(steps=steps, frames=frames, size=(height, width))
        pipe = self.pipeline(model)
        video = pipe(prompt, num_frames=frames, height=height, width=width,
                     generator=torch.Generator().manual_seed(int(seed)),
                     sampling=SampleOptions(steps, guidance, sampler, spacing), output_type="uint8")
        return self._write(video.pixels[0], video.fps)

    def image_to_video(self, image, prompt: str, model: str | None = "default", seed: int = 0,
                       steps: int | None = None, method: str | None = None):
        self.limits.check_request(steps=steps)
        pipe = self.pipeline(model)
        given = self._upload(image, "the image")[:1]
        video = pipe(prompt, generator=torch.Generator().manual_seed(int(seed)), sampling=SampleOptions(steps),
                     image=given[0], conditioning=FrameConditioning(method or None), output_type="uint8")
        return self._write(video.pixels[0], video.fps)

    def extend(self, video, prompt: str, frames: int, model: str | None = "default", seed: int = 0,
               steps: int | None = None, method: str | None = None, mode: str = "windows"):
        self.limits.check_request(steps=steps, frames=int(frames))
        pipe = self.pipeline(model)
        given = self._upload(video, "the video")
        out = pipe.extend(given, prompt, int(frames), torch.Generator().manual_seed(int(seed)), SampleOptions(steps),
                          FrameConditioning(method or None), mode=mode or "windows")
        return self._write(out.pixels[0], out.fps)

    def interpolate(self, video, factor: int, prompt: str | None = None, model: str | None = "default",
                    seed: int = 0, steps: int | None = None, method: str | None = None):
        self.limits.check_request(steps=steps)
        pipe = self.pipeline(model)
        given = self._upload(video, "the video")
        self.limits.check_request(frames=(len(given) - 1) * int(factor) + 1)
        out = pipe.interpolate(given, int(factor), prompt or None, torch.Generator().manual_seed(int(seed)),
                               SampleOptions(steps), FrameConditioning(method or None))
        return self._write(out.pixels[0], out.fps)

    def evaluate(self, files: list | None = None, captions: str = "", model: str | None = None, num: int = 8):
        """Score uploaded videos (captions one per line, in upload order) or `num` samples of a model;
        returns (report markdown, best/worst sheet, metrics plot) as `vidiff eval` writes them."""
        from ..evaluation.evaluate import evaluate
        out = self._folder() / "eval"
        if files:
            self.limits.check_request(videos=len(files))
            lines = [c.strip() for c in (captions or "").splitlines() if c.strip()]
            if lines and len(lines) != len(files):
                raise VidiffError(f"{len(files)} videos but {len(lines)} captions; give one caption per line, or none")
            folder = out.parent / "videos"
            folder.mkdir()
            rows = []
            for i, f in enumerate(files):
                path = Path(f if isinstance(f, str) else f.name)
                self.limits.check_frames(as_frames(path, f"video {path.name}"), f"video {path.name}")
                name = f"{i:03d}{path.suffix.lower()}"
                shutil.copy(path, folder / name)
                rows.append({"file": name, **({"caption": lines[i]} if lines else {})})
            (folder / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            evaluate(out, videos=folder)
        elif model:
            self.limits.check_request(videos=int(num))
            evaluate(out, pipe=self.pipeline(model), num=int(num))
        else:
            raise VidiffError("upload videos or pick a model to evaluate")
        return (out / "report.md").read_text(), str(out / "best_worst.png"), str(out / "metrics.png")

    def run_info(self, run: str):
        """(loss plot, latest sample sheet, config.json text, checkpoint names) of a run under --runs."""
        folder = inside(self.runs, run)
        loss = folder / "loss.png"
        sheets = sorted((folder / "samples").glob("*.png")) if (folder / "samples").is_dir() else []
        config = (folder / "config.json").read_text() if (folder / "config.json").is_file() else "{}"
        checkpoints = sorted(p.name for p in (folder / "checkpoints").iterdir()) if (folder / "checkpoints").is_dir() else []
        return (str(loss) if loss.is_file() else None, str(sheets[-1]) if sheets else None, config, checkpoints)

    def generate_from_checkpoint(self, run: str, checkpoint: str, prompt: str, seed: int = 0):
        folder = inside(self.runs, run)
        if not checkpoint or checkpoint not in self.run_info(run)[3]:
            raise VidiffError(f"pick one of the run's checkpoints (got '{checkpoint}')")
        name = str((folder / "checkpoints" / checkpoint).relative_to(self.runs))
        return self.generate(prompt, model=name, seed=seed)
