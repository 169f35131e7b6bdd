"""Sequence parallelism: activation memory per process against frame count, 1 process against 2 (a
benchmark, not a test).

    python benchmarks/sequence_parallel.py [--frames 8,16,32,64] [--width 128] [--depth 4]

A DiT (the latent recipe's size: 4x8x8 latents per frame, patch 1, 64 tokens a frame) runs one training
forward on a batch of 1; the activations it keeps for backward are counted exactly (torch's
saved-tensor hooks: the bytes of every tensor saved, each storage once). With N processes under
torchrun (gloo on the CPU) each holds its frames' share. Target: about 1/N of one process's. The time
of forward + backward is printed beside (on 2 CPU cores the processes share the cores: not a speed test).
Writes docs/results/sequence_parallel.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import publish                                             # noqa: E402
from vidiff.models.dit import DiT3D                                     # noqa: E402
from vidiff.models.sequence_parallel import sequence_group              # noqa: E402


def activation_bytes(model: DiT3D, frames: int) -> tuple[float, float]:
    """(MB of tensors saved for backward by one forward, seconds of forward + backward)."""
    torch.manual_seed(0)
    x, log_snr = torch.randn(1, 4, frames, 8, 8), torch.zeros(1)
    context, mask = torch.randn(1, 8, 128), torch.ones(1, 8, dtype=torch.bool)
    seen, total = set(), [0]

    def pack(t: torch.Tensor):
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total[0] += key[1]
        return t
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x, log_snr, context, mask)
    out.square().mean().backward()
    return total[0] / 2**20, time.perf_counter() - start


def measure(frames: list[int], attention: str, width: int, depth: int, split: bool) -> dict:
    torch.manual_seed(0)
    model = DiT3D(in_channels=4, width=width, depth=depth, head_dim=32, patch=(1, 1, 1), attention=attention,
                  context_dim=128).train()
    if split:
        model.sequence = sequence_group()
    return {f: activation_bytes(model, f) for f in frames}


def worker(args) -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    frames = [int(f) for f in args.frames.split(",")]
    out = {a: measure(frames, a, args.width, args.depth, True) for a in ("factorized", "full")}
    if dist.get_rank() == 0:
        Path(args.result).write_text(json.dumps(out))
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", default="8,16,32,64")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", default="/tmp/vidiff-sp.json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    torch.set_num_threads(1)
    frames = [int(f) for f in args.frames.split(",")]
    one = {a: measure(frames, a, args.width, args.depth, False) for a in ("factorized", "full")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__, "--worker",
           "--frames", args.frames, "--width", str(args.width), "--depth", str(args.depth), "--result", args.result]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
    two = json.loads(Path(args.result).read_text())
    lines = ["| attention | frames | tokens | 1 process: MB | 2 processes: MB each | ratio | 1 process: s | 2 processes: s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for a in ("factorized", "full"):
        for f in frames:
            (m1, s1), (m2, s2) = one[a][f], two[a][str(f)]
            lines.append(f"| {a} | {f} | {f * 64:,} | {m1:.1f} | {m2:.1f} | {m2 / m1:.2f} | {s1:.2f} | {s2:.2f} |")
    body = (f"A DiT of width {args.width}, depth {args.depth}, head dim 32, on 4x8x8 latents per frame (patch 1: 64 "
            "tokens a frame), batch 1, one training forward; `MB`: the activations kept for backward (saved-tensor "
            "hooks, each storage counted once). 2 processes: torchrun, gloo, one thread each.\n\n" + "\n".join(lines) + "\n")
    publish("sequence_parallel", "Sequence parallelism: activation memory per process", body,
            f"python benchmarks/sequence_parallel.py --frames {args.frames} --width {args.width} --depth {args.depth}")


if __name__ == "__main__":
    main()
