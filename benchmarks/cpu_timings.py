"""Train-step and generation wall-clock of a config's model on this machine (a benchmark, not a test).

    python benchmarks/cpu_timings.py configs/tiny-shapes.yaml

Prints parameters, seconds per training step at the config's batch size (data generation
included, as in `vidiff train`), and seconds to generate one clip with the embedded default model
per sampler at 25 steps with guidance (2 model evaluations per step, batched).
"""
from __future__ import annotations

import sys
import tempfile
import time

import torch

from results import publish
from vidiff.config import load_config
from vidiff.pipeline import SampleOptions, VideoPipeline
from vidiff.training import Trainer


def time_train_step(config_path: str, warmup: int = 3, measured: int = 10) -> tuple[int, float]:
    cfg = load_config(config_path)
    cfg.train.steps = warmup + measured
    trainer = Trainer(cfg, tempfile.mkdtemp() + "/run", progress=False)
    for _ in range(warmup):
        trainer.train_step()
    start = time.perf_counter()
    for _ in range(measured):
        trainer.train_step()
    params = sum(p.numel() for p in trainer.model.parameters())
    return params, (time.perf_counter() - start) / measured


def time_generation(sampler: str, steps: int = 25, repeats: int = 3) -> float:
    pipe = VideoPipeline.from_pretrained()
    pipe("a red circle bouncing", sampling=SampleOptions(2, progress=False))            # warm-up
    start = time.perf_counter()
    for seed in range(repeats):
        pipe("a red circle and a blue square bouncing", generator=torch.Generator().manual_seed(seed),
             sampling=SampleOptions(steps, sampler=sampler, progress=False))
    return (time.perf_counter() - start) / repeats


if __name__ == "__main__":
    config = sys.argv[1] if len(sys.argv) > 1 else "configs/tiny-shapes.yaml"
    params, step = time_train_step(config)
    cfg = load_config(config)
    lines = [f"{torch.get_num_threads()} threads", "", "| what | value |", "|---|---:|",
             f"| parameters | {params / 1e6:.2f} M |",
             f"| train step, batch {cfg.train.batch_size} x {cfg.data.frames}x{cfg.data.size}x{cfg.data.size} | {step:.2f} s |"]
    lines += [f"| generate 1 clip, {sampler}, 25 steps, guidance | {time_generation(sampler):.2f} s |"
              for sampler in ("ddim", "dpm++2m")]
    publish("cpu_timings", f"Train and sample timings of {config}", "\n".join(lines),
            f"python benchmarks/cpu_timings.py {config}")
