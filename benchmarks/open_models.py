"""vidiff against diffusers on the same random-weight Wan models (a benchmark, not a test).

    python benchmarks/open_models.py [--preset small] [--frames 17] [--size 64x96] [--steps 8] [--repeats 3]
    python benchmarks/open_models.py --full            # on a GPU: Wan 2.1-1.3B at 81 frames of 480x832, bf16

1. Sampling: WanPipeline and vidiff's VideoPipeline load the same directory and make the same clip
   (same prompt, seed, steps, guidance 5, size), each timed whole (text encoder, denoising, VAE decode),
   best of --repeats after a warm-up; vidiff with the directory's scheduler and with its own flow-euler;
   then the same on a Wan 2.2 A14B layout (two experts, guidance 5 then 3).
   Then the same without the VAE decode (output_type "latent"): the part vidiff runs itself (the VAE is
   diffusers' own module in both, and on a CPU its decode is most of a clip's time and of its noise).
2. LoRA training: a vidiff training step with cached latents (train.lora rank 16; activation
   checkpointing off and on, block swap, fp8 base weights, both) against the bare transformer's
   forward + backward at the same size, and the memory table of lora_memory.py.
3. Memory of Wan 2.1-1.3B's real configuration, built on the meta device (no weights, no download):
   the bytes of each component, and the weights each memory mode keeps on the device at its peak.
4. --full, on a GPU: the real-size model with random weights, s/step and peak GiB with and without
   --offload model (each arm under a time limit, so one run fits a short lease).
Writes docs/results/open_models.md (or open_models_gpu.md with --full).
"""
from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lora_memory                                                       # noqa: E402
from results import publish                                              # noqa: E402
from vidiff.models.external.random_wan import components, save_random_wan  # noqa: E402
from vidiff.pipeline import SampleOptions                                # noqa: E402
from vidiff.pipeline import VideoPipeline                                 # noqa: E402

PROMPT = "a red ball bounces over the table"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@contextmanager
def time_limit(seconds: int):
    """Raise TimeoutError in this arm after `seconds` (the --full run's guard on a short GPU lease)."""
    def stop(*_):
        raise TimeoutError(f"over {seconds} s")
    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def best_of(fn, repeats: int, device: torch.device) -> float:
    fn()                                               # warm-up: allocations, kernels
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def sampling(folder: Path, args, device: torch.device, guidance_2: float | None = None,
             outputs=(("np", "clip"), ("latent", "denoising only (latents, no VAE decode)"))) -> list[str]:
    """guidance_2: a two-expert directory's second guidance scale (diffusers' guidance_scale_2)."""
    from diffusers import WanPipeline
    h, w = args.height, args.width
    second = {} if guidance_2 is None else {"guidance_scale_2": guidance_2}
    kw = dict(num_frames=args.frames, height=h, width=w, num_inference_steps=args.steps, guidance_scale=5.0,
              **second)   # diffusers'
    size = dict(num_frames=args.frames, height=h, width=w)
    options = lambda sampler=None: SampleOptions(args.steps, 5.0, sampler, progress=False,   # noqa: E731
                                                 guidance_2=guidance_2)
    theirs = WanPipeline.from_pretrained(str(folder)).to(device)
    theirs.set_progress_bar_config(disable=True)
    ours = VideoPipeline.from_pretrained(folder, device=device)
    seed = lambda: torch.Generator().manual_seed(0)   # noqa: E731
    rows = []
    for output, what in outputs:
        ref = best_of(lambda: theirs(PROMPT, generator=seed(), output_type=output, **kw), args.repeats, device)
        rows.append(f"| diffusers WanPipeline (UniPC), {what} | {ref:.3f} | {ref / args.steps:.4f} | 1.00 |")
        for label, sampler in (("vidiff, the directory's UniPC", None), ("vidiff, flow-euler", "flow-euler")):
            t = best_of(lambda: ours(PROMPT, generator=seed(), sampling=options(sampler), output_type=output, **size),
                        args.repeats, device)
            rows.append(f"| {label}, {what} | {t:.3f} | {t / args.steps:.4f} | {t / ref:.2f} |")
    a = ours(PROMPT, generator=seed(), sampling=options(), output_type="uint8", **size).pixels.astype(int)
    b = (np.asarray(theirs(PROMPT, generator=seed(), output_type="np", **kw).frames) * 255).round().astype(int)
    return [f"{args.frames} frames of {h}x{w}, {args.steps} steps, guidance 5{f' then {guidance_2}' if second else ''}, "
            f"fp32, best of {args.repeats}; "
            f"largest difference between the two videos: {np.abs(a - b).max()}/255.", "",
            "| sampler | s per clip | s per step (clip / steps) | vs diffusers |", "|---|---|---|---|", *rows]


def training(folder: Path, args, device: torch.device) -> list[str]:
    from vidiff.config import config_from_dict
    from vidiff.data.io import save_video
    from vidiff.training import Trainer
    work = Path(tempfile.mkdtemp())
    (work / "clips").mkdir()
    for i in range(2):
        save_video(np.random.default_rng(i).integers(0, 255, (args.frames, args.height, args.width, 3), np.uint8),
                   work / "clips" / f"c{i}.mp4")
        (work / "clips" / f"c{i}.txt").write_text("a red ball bounces")
    blocks = None
    rows = []
    # (label, activation checkpointing, blocks swapped (-1: all but one), fp8 base)
    for label, checkpointing, swap, fp8 in (("vidiff LoRA step", False, 0, False),
                                            ("+ activation checkpointing (the default)", True, 0, False),
                                            ("+ checkpointing, block swap of all but one block", True, -1, False),
                                            ("+ checkpointing, fp8 base", True, 0, True),
                                            ("+ checkpointing, block swap and fp8 base", True, -1, True),
                                            ("+ checkpointing, block swap, fp8 base, activation offload", "offload", -1,
                                             True)):
        if swap < 0 and blocks is not None:
            swap = blocks - 1
        model = {"pretrained": str(folder), "pretrained_checkpointing": bool(checkpointing),
                 "offload_activations": checkpointing == "offload", "blocks_to_swap": max(swap, 0), "fp8_base": fp8}
        values = {"model": model,
                  "data": {"type": "folder", "frames": args.frames, "size": int((args.height * args.width) ** 0.5),
                           "folder": {"path": str(work / "clips"), "cache": str(work / "cache")}},
                  "train": {"steps": 1000, "batch_size": 1, "sample_every": 0, "checkpoint_every": 10_000,
                            "lora": {"rank": 16}}}
        trainer = Trainer(config_from_dict(values), work / f"run{len(rows)}", progress=False)
        blocks = len(trainer.model.shard_blocks())
        step = lambda: trainer.read(trainer.train_step())    # noqa: E731  (read: the step's one host sync)
        rows.append((label, best_of(step, args.repeats * 3, device)))
        if len(rows) == 1:
            transformer = trainer.model.transformer
            batch = trainer.batch(0)
            x = torch.stack(batch["latents"]).to(device)
            context = torch.stack(batch["context"]).to(device)
            t = torch.tensor([500.0], device=device)

            def bare():
                transformer.zero_grad(set_to_none=True)
                out = transformer(hidden_states=x, timestep=t, encoder_hidden_states=context, return_dict=False)[0]
                out.square().mean().backward()
            bare_time = best_of(bare, args.repeats * 3, device)
        del trainer
    plain = rows[1][1]
    lines = [f"Batch 1, {args.frames} frames of {args.height}x{args.width} (latents cached), LoRA rank 16 on the "
             f"attention projections, {blocks} blocks; {device.type}, same run. On a CPU the swap moves nothing "
             "between devices and fp8 is an upcast per layer, so those rows show the bookkeeping's cost, not a "
             "GPU's transfer time.", "",
             "| step | s | rate vs bare forward + backward | rate vs the default step |", "|---|---|---|---|",
             f"| bare transformer forward + backward (every weight's gradient) | {bare_time:.4f} | 1.00 | |"]
    lines += [f"| {label} | {t:.4f} | {bare_time / t:.2f} | {plain / t:.2f} |" for label, t in rows]
    return lines


def memory() -> list[str]:
    with torch.device("meta"):
        parts = components("1.3B")
    counts = {name: sum(p.numel() for p in parts[name].parameters()) for name in ("transformer", "text_encoder", "vae")}
    gib = lambda n, b: n * b / 2**30    # noqa: E731
    lines = ["Wan 2.1-1.3B's configuration (built on the meta device):", "",
             "| component | parameters | fp32 GiB | bf16 GiB |", "|---|---|---|---|"]
    lines += [f"| {name} | {n / 1e9:.3f} B | {gib(n, 4):.2f} | {gib(n, 2):.2f} |" for name, n in counts.items()]
    t, e, v = counts["transformer"], counts["text_encoder"], counts["vae"]
    lines += ["", "Weights on the device at each mode's peak (`--dtype bf16`: transformer and text encoder bf16, "
              "VAE fp32; activations come on top and need a GPU to measure, `--full`):", "",
              "| mode | weights on the device, GiB |", "|---|---|",
              f"| all on the device | {gib(t, 2) + gib(e, 2) + gib(v, 4):.2f} |",
              f"| `--offload model` (the largest component at a time: the text encoder) | {max(gib(t, 2), gib(e, 2), gib(v, 4)):.2f} |",
              f"| `--offload text` (the text encoder on the host; Wan's `--t5_cpu`): the transformer | {gib(t, 2):.2f} |"]
    return lines


def full_size(args) -> list[str]:
    device = torch.device("cuda")
    folder = Path(tempfile.mkdtemp()) / "wan-1.3B-random"
    with time_limit(args.limit):
        save_random_wan(folder, "1.3B")
    rows = ["| mode | s per step | peak GiB | note |", "|---|---|---|---|"]
    for offload in ("none", "model", "text"):
        try:
            with time_limit(args.limit):
                pipe = VideoPipeline.from_pretrained(folder, device=device, torch_dtype="bf16", offload=offload,
                                                         vae_tiling=True)
                torch.cuda.reset_peak_memory_stats()
                times = {}
                for steps in (1, 1 + args.steps):      # the difference: denoising steps alone
                    sync(device)
                    start = time.perf_counter()
                    pipe(PROMPT, num_frames=81, height=480, width=832, generator=torch.Generator().manual_seed(0),
                         sampling=SampleOptions(steps, progress=False))
                    sync(device)
                    times[steps] = time.perf_counter() - start
                per_step = (times[1 + args.steps] - times[1]) / args.steps
                rows.append(f"| {offload} | {per_step:.2f} | {torch.cuda.max_memory_allocated() / 2**30:.2f} | |")
                del pipe
                torch.cuda.empty_cache()
        except (TimeoutError, torch.OutOfMemoryError) as e:
            rows.append(f"| {offload} | - | - | {type(e).__name__}: {e} |")
    return [f"Wan 2.1-1.3B (random weights), 81 frames of 480x832, bf16, guidance 5, {args.steps} timed steps.", "", *rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="small")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", default="64x96")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="on a GPU: the real 1.3B configuration at full size")
    parser.add_argument("--limit", type=int, default=240, help="seconds per --full arm")
    args = parser.parse_args()
    args.height, args.width = (int(v) for v in args.size.split("x"))
    command = "python benchmarks/open_models.py " + " ".join(sys.argv[1:])
    if args.full:
        publish("open_models_gpu", "Open models at full size, on a GPU", "\n".join(full_size(args)), command)
        return
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    folder = save_random_wan(Path(tempfile.mkdtemp()) / f"wan-{args.preset}", args.preset)
    a14b = save_random_wan(Path(tempfile.mkdtemp()) / f"wan-{args.preset}-a14b", args.preset, layout="a14b")
    body = ["## Sampling, same model, same clip", "", *sampling(folder, args, device), "",
            "## Wan 2.2 A14B layout: two experts", "",
            "The same transformer size twice (high-noise and low-noise experts, boundary_ratio 0.875); each "
            "expert its own guidance.", "", *sampling(a14b, args, device, guidance_2=3.0), "",
            "## LoRA training with cached latents", "", *training(folder, args, device), "",
            "## Memory of the real 1.3B configuration", "", *memory(), "",
            "## LoRA training memory of the real 1.3B and 14B configurations", "", *lora_memory.table()]
    publish("open_models", f"Open models: vidiff and diffusers on the same random-weight Wan ({args.preset})",
            "\n".join(body), command)


if __name__ == "__main__":
    main()
