"""One process against torchrun with N processes on this machine's CPUs (a benchmark, not a test).

    python benchmarks/distributed_cpu.py [--config configs/tiny-shapes.yaml] [--steps 12] [--procs 2]

Both train the same recipe on the same global batch; one process uses every core as threads, the
N processes share the cores (cores / N threads each, gloo all-reduce). Prints seconds per step and
the speed-up. Step timings come from each run's own log (start-up, final checkpoint and samples excluded).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import yaml

from results import publish


def run(cmd: list[str], threads: int, out_dir: str) -> tuple[float, float]:
    """(seconds per step over the training steps, excluding the end-of-run checkpoint and samples; final loss)"""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([*cmd, "--out", out_dir], capture_output=True, text=True, env=env, check=True)
    latest = open(os.path.join(out_dir, "latest")).read().strip()
    last = json.load(open(os.path.join(out_dir, "checkpoints", latest, "state.json")))["history"][-1]
    return 1 / last["steps_per_s"], last["loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/tiny-shapes.yaml")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--procs", type=int, default=2)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    values = yaml.safe_load(open(args.config))
    values.setdefault("train", {}).update(steps=args.steps, sample_every=10**6, checkpoint_every=10**6,
                                          log_every=args.steps)
    tmp = tempfile.mkdtemp()
    config = os.path.join(tmp, "c.yaml")
    with open(config, "w") as f:
        yaml.safe_dump(values, f)
    train = ["-m", "vidiff", "train", "--config", config, "--no-progress"]
    one, loss_one = run([sys.executable, *train], cores, os.path.join(tmp, "one"))
    many, loss_many = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(args.procs), *train], max(1, cores // args.procs), os.path.join(tmp, "many"))
    lines = [f"{args.config}, global batch {values['train'].get('batch_size', 4)}, {args.steps} steps, {cores} cores", "",
             "| run | s / step | speed-up |", "|---|---:|---:|",
             f"| 1 process x {cores} threads | {one:.2f} | 1.00x |",
             f"| {args.procs} processes x {max(1, cores // args.procs)} threads (DDP, gloo) | {many:.2f} | {one / many:.2f}x |",
             "", f"final loss: {loss_one:.5f} (1 process), {loss_many:.5f} ({args.procs} processes)"]
    publish("distributed_cpu", "One process against torchrun on the CPU", "\n".join(lines),
            f"python benchmarks/distributed_cpu.py --config {args.config} --steps {args.steps} --procs {args.procs}")


if __name__ == "__main__":
    main()
