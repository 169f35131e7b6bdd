"""Sequence parallelism (vidiff/models/sequence_parallel.py): two CPU processes (gloo) that split each clip's
frames compute the one-process DiT's output and gradients, for factorized and full attention, and train
like one process; clips they cannot split, and backbones without it, are one-line errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import tiny_config_dict
from test_distributed import final_state, torchrun
from vidiff.config import config_from_dict
from vidiff.training import Trainer

WORKER = Path(__file__).parent / "sequence_parallel_worker.py"


def two_processes(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER), *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.parametrize("attention", ["factorized", "full"])
def test_split_frames_give_the_one_process_output_and_gradients(tmp_path, attention):
    two_processes(attention, 4, tmp_path / "r.json")
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["out"] <= 1e-5 * r["scale"] and r["grad"] < 1e-4
    assert r["partial"] > 1e-2          # each process alone holds only part of the gradient: the split is real


def test_a_frame_count_the_processes_do_not_divide_is_a_one_line_error(tmp_path):
    two_processes("factorized", 3, tmp_path / "r.json")
    r = json.loads((tmp_path / "r.json").read_text())
    assert "token frame count they divide" in r["error"] and "\n" not in r["error"]


def dit_values(**train):
    values = tiny_config_dict(**{"steps": 3, "batch_size": 2, "checkpoint_every": 3, **train})
    values["model"] = {"type": "dit", "dit": {"width": 32, "depth": 2, "head_dim": 16, "patch": [1, 4, 4]},
                       "text": values["model"]["text"]}
    return values


def test_training_with_split_clips_matches_one_process(tmp_path):
    Trainer(config_from_dict(dit_values()), tmp_path / "one", progress=False).train()
    (tmp_path / "sp.yaml").write_text(yaml.safe_dump(dit_values(parallel="sequence")))
    torchrun(tmp_path / "sp.yaml", tmp_path / "two")
    (_, one), (_, two) = final_state(tmp_path / "one"), final_state(tmp_path / "two")
    assert [h["loss"] for h in two["history"]] == pytest.approx([h["loss"] for h in one["history"]], rel=1e-4)


def test_sequence_parallel_training_gives_the_one_process_gradients(tmp_path):
    """Not only the losses: Adam would hide gradients that are N times too large."""
    import torch
    worker = Path(__file__).parent / "sequence_training_worker.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(worker), json.dumps(dit_values()), str(tmp_path / "one"),
                          str(tmp_path / "one.pt")], capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(worker), json.dumps(dit_values(parallel="sequence")), str(tmp_path / "two"),
                          str(tmp_path / "two.pt")], capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-6, msg=name)


def test_sequence_parallel_needs_a_dit(tmp_path):
    (tmp_path / "u.yaml").write_text(yaml.safe_dump(tiny_config_dict(steps=1, parallel="sequence")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                        "vidiff", "train", "--config", str(tmp_path / "u.yaml"), "--out", str(tmp_path / "run"),
                        "--no-progress"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode != 0 and "splits a DiT's tokens" in r.stderr
    last = [line for line in r.stderr.splitlines() if line.strip() and not set(line.strip()) <= set("=-")][-1]
    assert "error: train.parallel: sequence splits a DiT's tokens" in last     # torchrun's summary ends with our line


def test_generate_under_torchrun_makes_the_one_process_video(tmp_path):
    import numpy as np
    from vidiff.data.io import read_video
    Trainer(config_from_dict(dit_values(steps=1, checkpoint_every=1)), tmp_path / "run", progress=False).train()
    args = ["generate", "a red circle bouncing", "--model", str(tmp_path / "run"), "--frames", "8", "--steps", "3",
            "--seed", "4", "--scale", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "vidiff", *args, "--out", str(tmp_path / "one.gif")],
                         capture_output=True, text=True, env=env, timeout=300)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                          "vidiff", *args, "--out", str(tmp_path / "two.gif")], capture_output=True, text=True, env=env,
                         timeout=300)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-2000:], two.stderr[-2000:])
    a, b = read_video(tmp_path / "one.gif"), read_video(tmp_path / "two.gif")
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1


@pytest.mark.slow   # in CI's second pass (.ci/run), not the default suite
def test_a_frame_bucket_the_processes_cannot_split_is_a_one_line_error(tmp_path):
    """Folder data brings clips of other frame counts than data.frames (frame buckets); the trainer checks each
    bucket before the first step (the split itself would refuse it at the first such batch)."""
    import numpy as np
    from vidiff.data.io import save_video
    (tmp_path / "clips").mkdir()
    for name, frames in (("long", 12), ("short", 6)):
        save_video(np.zeros((frames, 32, 32, 3), np.uint8), tmp_path / "clips" / f"{name}.mp4", fps=8)
        (tmp_path / "clips" / f"{name}.txt").write_text("a red circle bouncing")
    values = dit_values(parallel="sequence")
    values["data"] = {"type": "folder", "frames": 8, "size": 16,
                      "folder": {"path": str(tmp_path / "clips"), "frames": [5, 8]}}
    (tmp_path / "sp.yaml").write_text(yaml.safe_dump(values))
    r = torchrun(tmp_path / "sp.yaml", tmp_path / "run", check=False)
    assert r.returncode != 0 and "this clip has 5" in r.stderr and "token frame count they divide" in r.stderr
