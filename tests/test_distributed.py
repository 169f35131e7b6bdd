"""Two CPU processes (gloo) under torchrun train the same model as one process on the same global batch."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import tiny_config_dict
from vidiff.config import config_from_dict
from vidiff.errors import VidiffError
from vidiff.distributed import Dist
from vidiff.training import Trainer

STEPS = 3


def config_file(tmp_path, parallel: str):
    values = tiny_config_dict(steps=STEPS, batch_size=4, checkpoint_every=STEPS, parallel=parallel)
    path = tmp_path / f"{parallel}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path, config_from_dict(values)


def torchrun(config, out, *extra, command=("train", "--config"), program=("-m", "vidiff"), check=True, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *program, *command, str(config), "--out", str(out), "--no-progress", *extra]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    assert result.returncode == 0 or not check, result.stderr[-3000:]
    return result


def final_state(run):
    folder = run / "checkpoints" / (run / "latest").read_text().strip()
    return load_file(folder / "model.safetensors"), json.loads((folder / "state.json").read_text())


@pytest.fixture(scope="module")
def single_process_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("single")
    _, cfg = config_file(tmp, "ddp")
    Trainer(cfg, tmp / "run", progress=False).train()
    return final_state(tmp / "run")


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path, single_process_run, parallel):
    config, _ = config_file(tmp_path, parallel)
    torchrun(config, tmp_path / "run")
    weights, state = final_state(tmp_path / "run")
    ref_weights, ref_state = single_process_run
    losses = [h["loss"] for h in state["history"]]
    ref_losses = [h["loss"] for h in ref_state["history"]]
    assert len(losses) == STEPS
    assert losses == pytest.approx(ref_losses, rel=1e-4, abs=1e-6)
    assert set(weights) == set(ref_weights)
    for name, tensor in ref_weights.items():   # full, unsharded tensors in the checkpoint
        torch.testing.assert_close(weights[name], tensor, atol=2e-5, rtol=1e-3, msg=name)


@pytest.mark.slow   # in CI's second pass (.ci/run), not the default suite
def test_fsdp_checkpoint_resumes_and_loads_in_one_process(tmp_path):
    from vidiff.pipeline import SampleOptions, VideoPipeline
    config, _ = config_file(tmp_path, "fsdp")
    torchrun(config, tmp_path / "run")
    torchrun(config, tmp_path / "run", "--resume", "--steps", str(STEPS + 1))
    _, state = final_state(tmp_path / "run")
    assert state["step"] == STEPS + 1
    pipe = VideoPipeline.from_pretrained(tmp_path / "run", device="cpu")
    video = pipe("a red circle bouncing", sampling=SampleOptions(2, progress=False))
    assert video.pixels.shape == (1, 4, 16, 16, 3)


def test_a_failing_rank_ends_the_run_with_its_error_instead_of_hanging(tmp_path):
    """Rank 1 raises while rank 0 is inside an FSDP all-gather: rank 1 must not wait at a barrier that
    rank 0 never reaches; it leaves, and torchrun stops rank 0."""
    config, _ = config_file(tmp_path, "fsdp")
    worker = str(Path(__file__).with_name("failing_rank_worker.py"))
    start = time.monotonic()
    result = torchrun(config, tmp_path / "run", program=(worker,), check=False, timeout=120)
    assert result.returncode != 0 and "rank 1 fails on purpose" in result.stderr
    assert time.monotonic() - start < 60


def test_fsdp_trains_a_lora_adapter_and_writes_its_samples(tmp_path):
    """The sharded EMA is gathered into a fresh model for the samples: it needs the adapters too."""
    values = tiny_config_dict(steps=2, batch_size=4, parallel="fsdp", lora={"rank": 2})
    (tmp_path / "lora.yaml").write_text(yaml.safe_dump(values))
    torchrun(tmp_path / "lora.yaml", tmp_path / "run")
    folder = tmp_path / "run" / "checkpoints" / "step_00000002"
    assert (folder / "lora.safetensors").is_file() and any((tmp_path / "run" / "samples").iterdir())


def test_global_batch_must_split_evenly():
    assert Dist(rank=1, world=2).part(4) == slice(2, 4)
    with pytest.raises(VidiffError, match="divisible by the 3 processes"):
        Dist(rank=0, world=3).part(4)


@pytest.mark.slow   # in CI's second pass (.ci/run), not the default suite
def test_evaluation_samples_split_across_processes_give_the_same_report(tmp_path):
    args = ["eval", "--model", "default", "--num-videos", "3", "--steps", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "vidiff", *args, "--out", str(tmp_path / "one")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            "-m", "vidiff", *args, "--out", str(tmp_path / "two")],
                           capture_output=True, text=True, env=env, timeout=300)
    assert multi.returncode == 0, multi.stderr[-2000:]
    one = json.loads((tmp_path / "one" / "report.json").read_text())
    two = json.loads((tmp_path / "two" / "report.json").read_text())
    assert one["summary"] == pytest.approx(two["summary"], rel=1e-6)
    assert sorted(p.name for p in (tmp_path / "two" / "videos").iterdir()) == \
        ["captions.jsonl", "sample_0000.mp4", "sample_0001.mp4", "sample_0002.mp4"]


@pytest.mark.slow   # in CI's second pass (.ci/run), not the default suite
def test_distillation_on_two_fsdp_processes_matches_one_process(tmp_path):
    """Each rank draws its slice of the global batch's noise (not a copy of one local draw), and the
    student's FSDP shards are gathered when it becomes the next round's teacher."""
    values = tiny_config_dict(steps=2, batch_size=4, parallel="fsdp")
    Trainer(config_from_dict(values), tmp_path / "teacher", progress=False).train()
    args = ["--steps", "2", "--teacher-steps", "8", "--train-steps", "4"]        # two rounds: 8 -> 4 -> 2
    one = subprocess.run([sys.executable, "-m", "vidiff", "distill", "--model", str(tmp_path / "teacher"),
                          "--out", str(tmp_path / "one"), "--no-progress", *args],
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun(tmp_path / "teacher", tmp_path / "two", *args, command=("distill", "--model"))
    (_, state), (_, ref_state) = final_state(tmp_path / "two"), final_state(tmp_path / "one")
    losses, ref_losses = [h["loss"] for h in state["history"]], [h["loss"] for h in ref_state["history"]]
    assert len(losses) == 4 and losses == pytest.approx(ref_losses, rel=1e-4, abs=1e-6)


def test_a_trainer_under_torchrun_without_a_process_group_is_a_one_line_error(tmp_path, monkeypatch):
    """Process groups have one home (distributed.process_group); a trainer never makes its own."""
    from vidiff.distributed import current
    from vidiff.errors import VidiffError
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(VidiffError, match="process_group"):
        current()
    with pytest.raises(VidiffError, match="process_group"):
        Trainer(config_from_dict(tiny_config_dict(steps=1)), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
