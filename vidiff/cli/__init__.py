"""The `vidiff` command line: a thin layer that parses, validates and calls the Python API."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import VidiffError
from ..config import DECODE_TILE
from .groups import Conditioning, Model, Output, Run, Sampling, grouped

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Train, sample and evaluate video diffusion models.")   # no markup: "[ui]" is text


def _version(value: bool) -> None:
    if value:
        from .. import __version__
        typer.echo(f"vidiff {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")):
    """Train, sample and evaluate video diffusion models."""


def run_config(run: Run, recipe=None):
    """The recipe a training command runs: the YAML given (or a Config built by the command), or the
    run's own config when resuming."""
    from ..checkpoint import read_config, resolve_checkpoint
    from ..config import load_config, override
    from ..training.options import validate_training
    config, out, resume, steps, minutes = run.config, run.out, run.resume, run.steps, run.minutes
    if config is None and recipe is None and not resume:
        raise VidiffError("pass --config <yaml> (or --resume to continue the run in --out)")
    if out.exists() and not out.is_dir():
        raise VidiffError(f"--out '{out}' is a file; give a folder for the run")
    if resume and config is None and not (out / "latest").is_file():
        raise VidiffError(f"nothing to resume in '{out}' (no 'latest' checkpoint); pass --config to start a run")
    cfg = (load_config(config) if config is not None else read_config(resolve_checkpoint(out)) if resume
           else recipe)
    if steps is not None:
        override(cfg, "train.steps", steps, "--steps")
    if minutes is not None:
        override(cfg, "train.time_limit_minutes", minutes, "--minutes")
    return validate_training(cfg)


def run_training(task, run: Run, recipe=None) -> None:
    """`vidiff train`, `train-vae`, `distill` and `tune`: one task's Trainer, the summary printed as JSON by rank 0."""
    from ..distributed import process_group
    from ..training import Trainer
    cfg = run_config(run, recipe)
    with process_group():
        trainer = Trainer(cfg, run.out, resume=run.resume, progress=run.progress, task=task)
        summary = trainer.train()
        if trainer.dist.main:
            typer.echo(json.dumps(summary))


def _run(out: Path, resume: bool = False, minutes: Optional[float] = None, progress: bool = True) -> Run:
    """A Run for a command that builds its own recipe (distill, tune)."""
    return Run(config=None, out=out, resume=resume, steps=None, minutes=minutes, progress=progress)


@app.command()
@grouped(run=Run)
def train(run: Run = None):
    """Train a text-to-video model."""
    from ..training import DiffusionTask
    run_training(DiffusionTask, run)


@app.command()
def distill(model: str = typer.Option(..., help="the model to distil: run, checkpoint or 'default'"),
            out: Path = typer.Option(..., help="run folder of the student"),
            steps: int = typer.Option(4, help="the student's sampling steps"),
            teacher_steps: int = typer.Option(32, help="the teacher's DDIM steps (steps times a power of 2)"),
            guidance: Optional[float] = typer.Option(None, help="the teacher's guidance scale, built into the student "
                                                                "(default: the teacher's diffusion.guidance)"),
            train_steps: int = typer.Option(1200, help="training steps, split evenly over the halving rounds"),
            minutes: Optional[float] = typer.Option(None, help="stop after this much training time (0 = no limit)"),
            resume: bool = typer.Option(False, help="continue the student run in --out"),
            progress: bool = typer.Option(True, help="show a progress bar")):
    """Progressive distillation: a student that samples in --steps DDIM steps, one pass each."""
    from ..training.distill import DistillTask, distill_config
    recipe = None if resume else distill_config(model, steps, teacher_steps, guidance, train_steps)
    run_training(DistillTask, _run(out, resume, minutes, progress), recipe)


@app.command()
def tune(video: Path = typer.Argument(..., help="the one clip to learn the motion of"),
         caption: str = typer.Argument(..., help="what the clip shows, in the model's words"),
         out: Path = typer.Option(..., help="run folder of the tuned model"),
         model: str = typer.Option("default", help="the model to tune: run, checkpoint or 'default'"),
         steps: int = typer.Option(300, help="training steps"),
         lr: Optional[float] = typer.Option(None, help="learning rate (default 1e-4; 1e-3 with --lora: a "
                                                       "zero-initialised low-rank update needs larger steps)"),
         lora: int = typer.Option(0, "--lora", help="train a LoRA adapter of this rank on the same layers instead "
                                                    "(a file of kilobytes: RUN/checkpoints/step_*/lora.safetensors; `--lora RUN` finds the latest)"),
         progress: bool = typer.Option(True, help="show a progress bar")):
    """One-shot tuning (Tune-A-Video): fine-tune temporal layers and attention queries on one clip."""
    from ..training import DiffusionTask
    from ..training.tune import tune_config
    lr = lr if lr is not None else 1e-3 if lora else 1e-4
    if steps < 1 or not lr > 0:
        raise VidiffError("--steps must be at least 1 and --lr positive")
    if (out / "latest").is_file():
        raise VidiffError(f"'{out}' already holds a tuned run; choose another --out")
    if lora < 0:
        raise VidiffError("--lora takes the adapter's rank, at least 1")
    run_training(DiffusionTask, _run(out, progress=progress), tune_config(video, caption, model, out, steps, lr, lora))


def _size(value: str | None) -> tuple[int | None, int | None]:
    """--size S or HxW -> (height, width); None: the model's."""
    from ..pipeline.checks import parse_size
    return parse_size(value)


def _motion(value: str):
    from ..pipeline import ZeroShot
    try:
        dx, dy = (float(v) for v in value.split(","))
    except ValueError:
        raise VidiffError(f"--motion takes DX,DY in pixels a frame, e.g. 1,0; got '{value}'") from None
    return ZeroShot((dx, dy))


def _load_loras(pipe, lora: list[Path], scales: list[float], expert: int = 1) -> None:
    for i, path in enumerate(lora):
        pipe.load_lora(path, scales[min(i, len(scales) - 1)] if scales else 1.0, expert=expert)


def _check_loras(lora: list[Path], scales: list[float], flag: str = "--lora") -> None:
    if scales and not lora:
        raise VidiffError(f"{flag}-scale sets the strength of a {flag} adapter; give {flag} PATH too")
    if scales and len(scales) not in (1, len(lora)):
        raise VidiffError(f"give one {flag}-scale, or one per {flag} ({len(lora)}); got {len(scales)}")


@app.command()
@grouped(output=Output, load=Model, sampling=Sampling, frames_given=Conditioning)
def generate(prompt: str = typer.Argument(..., help="e.g. 'a red circle and a blue square bouncing'"),
             output: Output = None, load: Model = None, sampling: Sampling = None, frames_given: Conditioning = None,
             frames: Optional[int] = typer.Option(None, help="frame count (default: the model's); more than the "
                                                             "model's native length runs in overlapping context windows"),
             size: Optional[str] = typer.Option(None, help="frame size: S (square) or HxW, e.g. 480x832 (default: "
                                                           "the model's)"),
             negative_prompt: Optional[str] = typer.Option(None, help="what guidance steers away from (default: the "
                                                                      "model's own, usually the empty prompt)"),
             window_overlap: Optional[int] = typer.Option(None, help="frames of the model's space shared by "
                                                                     "neighbouring context windows (default: a quarter)"),
             image: Optional[Path] = typer.Option(None, help="image-to-video: this image is the first frame"),
             zero_shot: bool = typer.Option(False, help="video from an image model (Text2Video-Zero): moving noise "
                                                          "and cross-frame attention"),
             motion: Optional[str] = typer.Option(None, help="with --zero-shot: DX,DY pixels a frame (default 1,0)"),
             stride: int = typer.Option(1, help="make every n-th frame (a model trained with frame strides)"),
             lora: Optional[List[Path]] = typer.Option(None, help="apply this LoRA adapter (lora.safetensors, or a "
                                                                  "LoRA run); repeat to stack several"),
             lora_scale: Optional[List[float]] = typer.Option(None, help="strength of each --lora, in order "
                                                                         "(default 1; one value applies to all)"),
             lora_2: Optional[List[Path]] = typer.Option(None, help="a LoRA for a two-expert model's second, low-noise "
                                                                    "expert (--lora adapts the first); repeat to stack"),
             lora_2_scale: Optional[List[float]] = typer.Option(None, help="strength of each --lora-2, in order")):
    """Generate a video from a text prompt (and, with --image, from its first frame)."""
    from ..distributed import process_group
    from ..pipeline import ContextWindows
    if not prompt.strip():
        raise VidiffError("the prompt is empty; describe the video, e.g. 'a red circle bouncing'")
    if motion is not None and not zero_shot:
        raise VidiffError("--motion is zero-shot video's camera motion; it applies with --zero-shot")
    zero = _motion(motion or "1,0") if zero_shot else None
    paths, options = output.paths(), sampling.options()
    lora, scales, lora_2, scales_2 = lora or [], lora_scale or [], lora_2 or [], lora_2_scale or []
    _check_loras(lora, scales)
    _check_loras(lora_2, scales_2, "--lora-2")
    height, width = _size(size)
    windows = ContextWindows(overlap=window_overlap) if window_overlap is not None else None
    with process_group() as dist:     # under torchrun: the processes share each clip (a DiT's sequence parallelism)
        pipe = load.load(dist.device)
        if dist.enabled:
            from ..models.sequence_parallel import sequence_group
            pipe.split_sequences(sequence_group())
        _load_loras(pipe, lora, scales)
        _load_loras(pipe, lora_2, scales_2, expert=2)
        video = pipe(prompt, sampling=options, image=image, conditioning=frames_given.conditioning(),
                     zero_shot=zero, num_frames=frames, height=height, width=width, generator=sampling.generator(),
                     negative_prompt=negative_prompt, stride=stride, context_windows=windows, output_type="uint8")
        if dist.main:
            output.save(video, paths)


@app.command()
@grouped(output=Output, load=Model, sampling=Sampling, frames_given=Conditioning)
def extend(video: Path = typer.Argument(..., help="the video to continue (any size: fitted to the frame size)"),
           prompt: str = typer.Argument(..., help="what the video shows, e.g. 'a red circle bouncing'"),
           output: Output = None, load: Model = None, sampling: Sampling = None, frames_given: Conditioning = None,
           frames: int = typer.Option(..., help="length of the result in frames (the video's own included)"),
           size: Optional[str] = typer.Option(None, help="frame size: S or HxW (default: the model's)"),
           context: Optional[int] = typer.Option(None, help="frames each new window is conditioned on "
                                                               "(default: a quarter of the model's window)"),
           mode: str = typer.Option("windows", help="windows: one window after another; hierarchical: keyframes "
                                                      "every --stride frames first, then the frames between"),
           stride: Optional[int] = typer.Option(None, help="with --mode hierarchical: keyframe spacing "
                                                             "(default: the model's largest trained stride)")):
    """Continue a video to any length, one model-length window at a time."""
    paths, options = output.paths(), sampling.options()
    height, width = _size(size)
    result = load.load().extend(video, prompt, frames, sampling.generator(), options,
                                frames_given.conditioning(), context, mode, stride, height=height, width=width,
                                output_type="uint8")
    output.save(result, paths)


@app.command()
@grouped(output=Output, load=Model, sampling=Sampling, frames_given=Conditioning)
def interpolate(video: Path = typer.Argument(..., help="the frames to interpolate between (any size)"),
                output: Output = None, load: Model = None, sampling: Sampling = None, frames_given: Conditioning = None,
                factor: int = typer.Option(..., help="N frames become (N - 1) * factor + 1"),
                size: Optional[str] = typer.Option(None, help="frame size: S or HxW (default: the model's)"),
                prompt: Optional[str] = typer.Option(None, help="what the video shows (default: no text)")):
    """Make factor - 1 new frames between each pair of frames of a video, keeping the given ones."""
    paths, options = output.paths(), sampling.options()
    height, width = _size(size)
    result = load.load().interpolate(video, factor, prompt, sampling.generator(), options,
                                     frames_given.conditioning(), height=height, width=width, output_type="uint8")
    output.save(result, paths)


@app.command()
def serve(model: Optional[Path] = typer.Option(None, help="the model offered as 'default' (default: the embedded one)"),
          runs: Optional[Path] = typer.Option(None, help="offer the run folders under this directory (and only those)"),
          host: str = typer.Option("127.0.0.1", help="interface to listen on; 0.0.0.0 exposes the server to the network"),
          port: int = typer.Option(7860, help="port"),
          max_upload_mb: float = typer.Option(20.0, help="largest uploaded file"),
          max_frames: int = typer.Option(256, help="most frames of an uploaded video or a result"),
          max_side: int = typer.Option(1024, help="largest side of an uploaded frame, in pixels"),
          dtype: str = Model.dtype, compile: bool = Model.compile):
    """A web UI: text/image-to-video, extend, interpolate, evaluate and browse runs (needs the [ui] extra)."""
    try:
        from ..webui.app import serve as run_server
    except ImportError:
        raise VidiffError('the web UI needs gradio: pip install -e ".[ui]"') from None
    from ..webui import Limits
    if runs is not None and not runs.is_dir():
        raise VidiffError(f"--runs '{runs}' is not a directory")
    if max_upload_mb <= 0 or max_frames < 1 or max_side < 8:
        raise VidiffError("--max-upload-mb must be positive, --max-frames at least 1 and --max-side at least 8")
    if not 1 <= port <= 65535:
        raise VidiffError(f"--port must be 1 to 65535, got {port}")
    import socket
    try:
        socket.getaddrinfo(host, port)
    except (socket.gaierror, UnicodeError):
        raise VidiffError(f"--host '{host}' is not an address or name this machine can listen on "
                          "(e.g. 127.0.0.1, or 0.0.0.0 for every interface)") from None
    from ..devices import resolve_dtype
    resolve_dtype(dtype)                  # a wrong name fails now, not at the first request
    run_server(model, runs, host, port, Limits(max_upload_mb, max_frames, max_side), dtype=dtype, compile=compile)


def _prompt_file(path: Path) -> list[str]:
    if not path.is_file():
        raise VidiffError(f"--prompts '{path}' is not a file (a text file, one prompt a line)")
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if not lines:
        raise VidiffError(f"--prompts '{path}' holds no prompts (one a line)")
    return lines


@app.command("eval")
@grouped(sampling=Sampling)
def evaluate(videos: Optional[Path] = typer.Argument(None, help="folder of videos (mp4/gif/frame folders) with "
                                                                "captions.jsonl, captions.csv or <name>.txt"),
             out: Path = typer.Option(Path("eval"), help="folder for report.json, report.md and pictures"),
             model: Optional[str] = typer.Option(None, help="evaluate samples of this model ('default' = embedded)"),
             ground_truth: bool = typer.Option(False, help="evaluate synthetic ground-truth clips"),
             num: int = typer.Option(20, "--num", "--num-videos", help="videos to generate / draw (under torchrun "
                                     "spell it --num-videos: torchrun claims --num)"),
             sampling: Sampling = None,
             gravity: float = typer.Option(0.0, help="gravity of the world, in frame sizes per frame^2 (without --config)"),
             config: Optional[Path] = typer.Option(None, help="the world the videos show (its data section): clips "
                                                              "for --ground-truth, and the frame size objects of a folder's "
                                                              "videos are measured at (default: 32x32)"),
             overwrite: bool = typer.Option(False, help="replace a report already in --out"),
             known: int = typer.Option(0, help="with --model: continue the first K frames of held-out ground-truth "
                                               "clips and score the rest against the simulator (physics benchmark)"),
             frames: Optional[int] = typer.Option(None, help="with --model: frames of each sample (default: the model's)"),
             size: Optional[str] = typer.Option(None, help="with --model: frame size S or HxW (default: the model's)"),
             prompts: Optional[Path] = typer.Option(None, help="with --model: sample these prompts (a text file, one "
                                                               "a line) instead of held-out prompts of the model's world; "
                                                               "needed for a diffusers-format model"),
             dtype: str = Model.dtype, compile: bool = Model.compile):
    """Score temporal consistency, prompt fidelity and physics of videos; write a report."""
    from ..distributed import process_group
    from ..evaluation.evaluate import evaluate as run_evaluation
    from ..evaluation.evaluate import world_of
    from ..evaluation.report import markdown_table
    if sum(x is not None and x is not False for x in (videos, model, ground_truth or None)) != 1:
        raise VidiffError("give exactly one of: a videos folder, --model PATH|default, or --ground-truth")
    pipe = None
    with process_group() as dist:
        world = world_of(config, gravity)
        options = None
        if model is not None:
            from ..pipeline import VideoPipeline        # under torchrun: each process samples its share
            listed = _prompt_file(prompts) if prompts is not None else None
            asked = sampling.options()
            pipe = VideoPipeline.from_pretrained(None if model == "default" else model, device=dist.device,
                                                 torch_dtype=dtype, compile=compile)
            options = pipe.options(asked)
            num = listed or num
            pipe.use_size(frames, *_size(size))
        elif frames is not None or size is not None:
            raise VidiffError("--frames and --size set the samples of a --model; give --model too")
        elif prompts is not None:
            raise VidiffError("--prompts gives the prompts a --model samples; give --model too")
        summary = run_evaluation(out, videos=videos, pipe=pipe, data=world if ground_truth else None, num=num,
                                 options=options, seed=sampling.seed, overwrite=overwrite, world=world, known=known)
    if summary is None:
        return
    for name, reason in summary.pop("skipped"):
        typer.echo(f"skip  {name}: {reason}")
    typer.echo(markdown_table({"value": summary}))
    typer.echo(f"wrote {out / 'report.json'}, {out / 'report.md'}, {out / 'best_worst.png'}, {out / 'metrics.png'}")


@app.command()
def export(source: Path = typer.Argument(..., help="run folder or checkpoint folder"),
           out: Path = typer.Argument(..., help="new folder for the inference checkpoint"),
           vae: Optional[Path] = typer.Option(None, help="decode with this VAE (run or checkpoint) instead: a "
                                                          "decoder fine-tune of the model's own, same encoder"),
           merge_lora: bool = typer.Option(False, help="a LoRA run: fold its adapter into the weights")):
    """Export a checkpoint's EMA weights as an inference-only model folder (a fine-tuned diffusers-format
    model: its transformer folder, which the library's from_pretrained loads)."""
    from ..checkpoint import export_pretrained, read_config, resolve_checkpoint
    if read_config(resolve_checkpoint(source)).model.pretrained:
        if vae is not None:
            raise VidiffError("--vae swaps the decoder of vidiff's own latent models; this run fine-tuned a pretrained one")
        from ..training.open_model import export_transformer
        typer.echo(f"wrote {export_transformer(source, out, merge_lora)}")
        return
    typer.echo(f"wrote {export_pretrained(source, out, vae, merge_lora)}")


@app.command("train-vae")
@grouped(run=Run)
def train_vae(run: Run = None):
    """Train the causal video VAE used for latent diffusion."""
    from ..training import VAETask
    run_training(VAETask, run)


@app.command()
def reconstruct(source: Path = typer.Argument(..., help="input video (.mp4, .gif, ...)"),
                out: Path = typer.Argument(..., help="output .mp4, .gif or .png"),
                vae: Path = typer.Option(..., help="VAE run or checkpoint folder (vidiff train-vae)"),
                tile: int = typer.Option(DECODE_TILE, help="decode in tiles of this many latent pixels"),
                fps: int = typer.Option(8, help="frames per second of the output"),
                scale: int = typer.Option(4, help="enlarge frames this many times (an MP4 keeps colour at half "
                                                  "resolution, which smears 32-px frames)"),
                overwrite: bool = typer.Option(False, help="replace an existing output file")):
    """Encode and decode a video with a VAE; print PSNR and SSIM against the input (in memory, at its size)."""
    from ..checkpoint import load_vae
    from ..data.io import check_writable, read_video, save_video, upscale
    from ..evaluation.reconstruction import psnr, reconstruct as run_reconstruction, ssim
    check_writable(out, overwrite)
    if tile < 1:
        raise VidiffError("--tile must be at least 1")
    if fps < 1 or scale < 1:
        raise VidiffError("--fps and --scale must be at least 1")
    frames, result = run_reconstruction(read_video(source), load_vae(vae)[0], tile)
    save_video(upscale(result, scale), out, fps=fps, overwrite=overwrite)
    t, h, w = frames.shape[:3]
    typer.echo(f"wrote {out} ({t} frames of {h}x{w}{f', shown {scale}x' if scale > 1 else ''}): "
               f"PSNR {psnr(frames, result):.2f} dB, SSIM {ssim(frames, result):.4f}")


lora_app = typer.Typer(add_completion=False, no_args_is_help=True, help="LoRA files.")
app.add_typer(lora_app, name="lora")


@lora_app.command("convert")
def lora_convert(source: Path = typer.Argument(..., help="a LoRA file in any format vidiff loads (diffusers, peft, "
                                                         "ComfyUI, musubi-tuner/kohya) or a peft folder"),
                 out: Path = typer.Argument(..., help="the new file (comfy, diffusers) or folder (peft)"),
                 to: str = typer.Option(..., help="comfy (diffusion_model. keys, lora_down/up + alpha: ComfyUI, "
                                                  "musubi-tuner), diffusers (load_lora_weights) or peft (a folder)"),
                 model: Path = typer.Option(..., help="the diffusers-format model directory the LoRA is for (its "
                                                      "module names; no weights are loaded)"),
                 overwrite: bool = typer.Option(False, help="replace an existing output")):
    """Convert a LoRA file between the formats that ComfyUI, diffusers and peft load."""
    from ..models.external import open_lora_names
    from ..models.lora_files import convert_lora
    typer.echo(f"wrote {convert_lora(source, out, to, open_lora_names(model), overwrite)}")


data_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Inspect training data.")
app.add_typer(data_app, name="data")


@data_app.command("check")
def data_check(folder: Optional[Path] = typer.Argument(None, help="folder of videos/images with captions (default: "
                                                                     "the --config's data.folder path and sources)"),
               config: Optional[Path] = typer.Option(None, help="take frames, size, stride/fps and the "
                                                                 "vocabulary from this training config"),
               frames: Optional[int] = typer.Option(None, help="clip length to check for (default: config or 16)"),
               frame_stride: Optional[int] = typer.Option(None, help="source frames between clip frames"),
               decode: bool = typer.Option(True, help="also decode one clip of every file, as training would")):
    """Report which files training would use and which it would skip, and why."""
    from ..data.video_folder import check_folder
    if (frames is not None and frames < 1) or (frame_stride is not None and frame_stride < 1):
        raise VidiffError("--frames and --frame-stride must be at least 1")
    from ..checkpoint import clip_multiple
    from ..config import load_config
    multiple = clip_multiple(load_config(config)) if config is not None else 8   # the recipe's model's, for its buckets
    dataset = check_folder(folder, config, frames, frame_stride, decode, multiple)
    data = dataset.cfg
    for name, reason in dataset.skipped:
        typer.echo(f"skip  {name}: {reason}")
    from ..data.buckets import describe
    targets = data.folder.frames or [data.frames]
    typer.echo(f"{len(dataset.entries)} usable ({len(dataset.videos)} videos, {len(dataset.images)} images), "
               f"{len(dataset.skipped)} skipped, for clips of {'/'.join(map(str, targets))} frames every "
               f"{data.folder.frame_stride}")
    typer.echo(f"buckets at {data.size}x{data.size} pixels, sides a multiple of {dataset.multiple} (frames x height x "
               f"width: clips per epoch): {describe(dataset.buckets()) or 'none'}")
    if config is None:
        words = dataset.caption_words()
        typer.echo(f"caption vocabulary ({len(words)} words, for model.text.vocab): {', '.join(words)}")


def _tell_torchrun(line: str) -> None:
    """Under torchrun, its closing failure summary shows a process's error file where it has one: put our
    one line there, so the last thing a user reads is what went wrong, not a pointer to torch's docs."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    try:
        with open(path, "w") as f:
            json.dump({"message": {"message": line, "extraInfo": {"py_callstack": line,
                                                                  "timestamp": str(int(time.time()))}}}, f)
    except OSError:
        pass


def main() -> None:
    try:
        app()
    except (VidiffError, ValueError) as e:      # ValueError: a lower layer's rule (the diffusion math's)
        typer.echo(f"error: {e}", err=True)
        _tell_torchrun(f"error: {e}")
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
