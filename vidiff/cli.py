"""The `vidiff` command line: a thin layer that parses, validates and calls the Python API."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import VidiffError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, sample and evaluate video diffusion models.")


def run_config(config: Optional[Path], out: Path, resume: bool, steps: Optional[int], minutes: Optional[float] = None):
    """The recipe a training command runs: the YAML given, or the run's own config when resuming."""
    from .config import load_config, validate
    from .training.checkpoint import read_config, resolve_checkpoint
    if config is None and not resume:
        raise VidiffError("pass --config <yaml> (or --resume to continue the run in --out)")
    if out.exists() and not out.is_dir():
        raise VidiffError(f"--out '{out}' is a file; give a folder for the run")
    cfg = load_config(config) if config is not None else read_config(resolve_checkpoint(out))
    if steps is not None:
        cfg.train.steps = steps
    if minutes is not None:
        cfg.train.time_limit_minutes = minutes
    return validate(cfg)


@app.command()
def train(config: Optional[Path] = typer.Option(None, help="YAML recipe, e.g. configs/tiny-shapes.yaml"),
          out: Path = typer.Option(..., help="run folder: checkpoints, samples, loss.png"),
          resume: bool = typer.Option(False, help="continue the run in --out from its latest checkpoint"),
          steps: Optional[int] = typer.Option(None, help="override train.steps"),
          minutes: Optional[float] = typer.Option(None, help="override train.time_limit_minutes: stop after this "
                                                              "much training time (0 = no limit)"),
          progress: bool = typer.Option(True, help="show a progress bar")):
    """Train a text-to-video model."""
    from .training.distributed import shutdown
    from .training.trainer import Trainer
    cfg = run_config(config, out, resume, steps, minutes)
    try:
        trainer = Trainer(cfg, out, resume=resume, progress=progress)
        summary = trainer.train()
        if trainer.dist.main:
            typer.echo(json.dumps(summary))
    finally:
        shutdown()


@app.command()
def generate(prompt: str = typer.Argument(..., help="e.g. 'a red circle and a blue square bouncing'"),
             out: Path = typer.Option(Path("out.mp4"), help="output .mp4, .gif or .png (contact sheet)"),
             model: Optional[Path] = typer.Option(None, help="checkpoint or run folder; default: embedded model"),
             frames: Optional[int] = typer.Option(None, help="frame count (default: the model's)"),
             size: Optional[int] = typer.Option(None, help="height and width (default: the model's)"),
             steps: int = typer.Option(25, help="sampling steps"),
             guidance: float = typer.Option(3.0, help="classifier-free guidance scale"),
             sampler: str = typer.Option("ddim", help="ddim | ddpm | dpm++2m | euler | heun | flow-euler"),
             eta: float = typer.Option(0.0, help="DDIM noise (0 deterministic, 1 DDPM-like)"),
             seed: int = typer.Option(0, help="random seed"),
             fps: int = typer.Option(8, help="frames per second of the file"),
             scale: int = typer.Option(4, help="enlarge frames this many times (nearest neighbour)"),
             sheet: bool = typer.Option(False, help="also write a PNG contact sheet beside the video"),
             overwrite: bool = typer.Option(False, help="replace existing output files")):
    """Generate a video from a text prompt."""
    import torch

    from .data.io import check_writable
    from .pipeline import VideoPipeline
    if not prompt.strip():
        raise VidiffError("the prompt is empty; describe the video, e.g. 'a red circle bouncing'")
    outputs = [out] + ([out.with_suffix(".png")] if sheet and out.suffix != ".png" else [])
    for path in outputs:  # check before minutes of sampling, not after
        check_writable(path, overwrite)
    if scale < 1 or fps < 1:
        raise VidiffError("--scale and --fps must be at least 1")
    pipe = VideoPipeline.from_pretrained(model)
    video = pipe(prompt, num_frames=frames, height=size, width=size, num_inference_steps=steps,
                 guidance_scale=guidance, generator=torch.Generator().manual_seed(seed), sampler=sampler, eta=eta)
    for path in outputs:
        video.save(path, fps=fps, scale=scale, overwrite=overwrite)
        typer.echo(f"wrote {path}")


@app.command("eval")
def evaluate(videos: Optional[Path] = typer.Argument(None, help="folder of videos (mp4/gif/frame folders) with "
                                                                "captions.jsonl, captions.csv or <name>.txt"),
             out: Path = typer.Option(Path("eval"), help="folder for report.json, report.md and pictures"),
             model: Optional[str] = typer.Option(None, help="evaluate samples of this model ('default' = embedded)"),
             ground_truth: bool = typer.Option(False, help="evaluate synthetic ground-truth clips"),
             num: int = typer.Option(20, "--num", "--num-videos", help="videos to generate / draw (under torchrun "
                                     "spell it --num-videos: torchrun claims --num)"),
             steps: int = typer.Option(25, help="sampling steps (with --model)"),
             guidance: float = typer.Option(3.0, help="guidance scale (with --model)"),
             sampler: str = typer.Option("ddim", help="sampler (with --model)"),
             seed: int = typer.Option(0, help="video i uses seed + i"),
             gravity: float = typer.Option(0.0, help="gravity of the world, in frame sizes per frame^2"),
             config: Optional[Path] = typer.Option(None, help="data config for --ground-truth (default: the model's)")):
    """Score temporal consistency, prompt fidelity and physics of videos; write a report."""
    from .config import DataConfig, load_config
    from .evaluation import sources
    from .evaluation.report import markdown_table, score_all, write_report
    if sum(x is not None and x is not False for x in (videos, model, ground_truth or None)) != 1:
        raise VidiffError("give exactly one of: a videos folder, --model PATH|default, or --ground-truth")
    if num < 1:
        raise VidiffError("--num must be at least 1")
    if videos is not None:
        names, clips, captions = sources.load_folder(videos)
        title, size = f"vidiff eval of {videos}", clips[0].shape[1]
    elif ground_truth:
        data = load_config(config).data if config else DataConfig(gravity=gravity)
        names, clips, captions = sources.ground_truth(data, num)
        title, size, gravity = f"vidiff eval of {num} ground-truth clips", data.size, data.gravity
    else:
        from .pipeline import VideoPipeline
        from .training.distributed import init_distributed, shutdown
        dist = init_distributed()                      # under torchrun: each process samples its share
        pipe = VideoPipeline.from_pretrained(None if model == "default" else model, device=dist.device)
        names, clips, captions = sources.model_samples(pipe, num, seed, steps, guidance, sampler, out / "videos", dist)
        shutdown()
        if not dist.main:
            return
        title, size, gravity = f"vidiff eval of {model} ({sampler}, {steps} steps)", pipe.config.data.size, pipe.config.data.gravity
    rows = score_all(names, clips, captions, gravity * size)
    extra = {}
    if videos is None:  # the world is known: FVD-shapes against a disjoint set of ground-truth clips
        from .evaluation.fvd import FVD_REFERENCE, fvd_shapes
        data = data if ground_truth else pipe.config.data
        extra["fvd_shapes"] = fvd_shapes(clips, sources.ground_truth(data, FVD_REFERENCE, offset=10**6)[1])
    summary = write_report(out, rows, clips, title, extra=extra)
    typer.echo(markdown_table({"value": summary}))
    typer.echo(f"wrote {out / 'report.json'}, {out / 'report.md'}, {out / 'best_worst.png'}, {out / 'metrics.png'}")


@app.command()
def export(source: Path = typer.Argument(..., help="run folder or checkpoint folder"),
           out: Path = typer.Argument(..., help="new folder for the inference checkpoint")):
    """Export a checkpoint's EMA weights as an inference-only model folder."""
    from .training.checkpoint import export_pretrained
    typer.echo(f"wrote {export_pretrained(source, out)}")


@app.command("train-vae")
def train_vae(config: Optional[Path] = typer.Option(None, help="YAML recipe with a vae section, e.g. configs/vae-shapes.yaml"),
              out: Path = typer.Option(..., help="run folder: checkpoints, reconstructions, loss.png"),
              resume: bool = typer.Option(False, help="continue the run in --out"),
              steps: Optional[int] = typer.Option(None, help="override train.steps"),
              progress: bool = typer.Option(True, help="show a progress bar")):
    """Train the causal video VAE used for latent diffusion."""
    from .training.vae_trainer import VAETrainer
    cfg = run_config(config, out, resume, steps)
    typer.echo(json.dumps(VAETrainer(cfg, out, resume=resume, progress=progress).train()))


@app.command()
def reconstruct(source: Path = typer.Argument(..., help="input video (.mp4, .gif, ...)"),
                out: Path = typer.Argument(..., help="output .mp4, .gif or .png"),
                vae: Path = typer.Option(..., help="VAE run or checkpoint folder (vidiff train-vae)"),
                tile: int = typer.Option(32, help="decode in tiles of this many latent pixels"),
                fps: int = typer.Option(8, help="frames per second of the output"),
                overwrite: bool = typer.Option(False, help="replace an existing output file")):
    """Encode and decode a video with a VAE; print PSNR and SSIM against the input."""
    import torch

    from .data.io import check_writable, read_video, save_video
    from .evaluation.reconstruction import psnr, ssim
    from .training.vae_trainer import load_vae
    check_writable(out, overwrite)
    if tile < 1:
        raise VidiffError("--tile must be at least 1")
    model, _ = load_vae(vae)
    frames = read_video(source)
    f, tf = model.spatial_factor, model.time_factor
    t = 1 + (frames.shape[0] - 1) // tf * tf                     # keep 1 + tf k frames
    h, w = frames.shape[1] // f * f, frames.shape[2] // f * f     # and sizes the VAE divides
    if h == 0 or w == 0:
        raise VidiffError(f"'{source}' is smaller than the VAE's {f}x{f} compression")
    frames = frames[:t, :h, :w]
    x = torch.from_numpy(frames.copy()).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    with torch.no_grad():
        recon = model.decode_tiled(model.encode(x)[0], tile=tile).clamp(-1, 1)
    result = ((recon[0].permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
    save_video(result, out, fps=fps, overwrite=overwrite)
    typer.echo(f"wrote {out} ({t} frames of {h}x{w}): PSNR {psnr(frames, result):.2f} dB, SSIM {ssim(frames, result):.4f}")


data_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Inspect training data.")
app.add_typer(data_app, name="data")


@data_app.command("check")
def data_check(folder: Path = typer.Argument(..., help="folder of videos/images with captions"),
               config: Optional[Path] = typer.Option(None, help="take frames, size, stride/fps and the "
                                                                 "vocabulary from this training config"),
               frames: Optional[int] = typer.Option(None, help="clip length to check for (default: config or 16)"),
               frame_stride: Optional[int] = typer.Option(None, help="source frames between clip frames"),
               decode: bool = typer.Option(True, help="also decode one clip of every file, as training would")):
    """Report which files training would use and which it would skip, and why."""
    import warnings

    import numpy as np

    from .config import Config, load_config
    from .data import VideoFolderDataset
    cfg = load_config(config) if config is not None else Config()
    data = cfg.data
    data.type, data.path = "folder", str(folder)
    data.frames = frames if frames is not None else data.frames
    data.frame_stride = frame_stride if frame_stride is not None else data.frame_stride
    if data.frames < 1 or data.frame_stride < 1:
        raise VidiffError("--frames and --frame-stride must be at least 1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # reported below, one line per file
        dataset = VideoFolderDataset(data, cfg.model.text.vocab if config is not None else None,
                                     warn=False, require_files=False)
        if decode:
            for entry in list(dataset.entries):
                try:
                    dataset.load(entry, np.random.default_rng(0))
                except Exception as e:
                    dataset.skip(str(entry.path.relative_to(folder)), f"decode failed: {str(e).splitlines()[0][:120]}", warn=False)
                    dataset.entries.remove(entry)
    for name, reason in dataset.skipped:
        typer.echo(f"skip  {name}: {reason}")
    videos = sum(e.kind == "video" for e in dataset.entries)
    typer.echo(f"{len(dataset.entries)} usable ({videos} videos, {len(dataset.entries) - videos} images), "
               f"{len(dataset.skipped)} skipped, for clips of {data.frames} frames every {data.frame_stride}")
    if config is None:
        words = sorted({w for e in dataset.entries for w in e.caption.lower().split()})
        typer.echo(f"caption vocabulary ({len(words)} words, for model.text.vocab): {', '.join(words)}")


def main() -> None:
    try:
        app()
    except VidiffError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
