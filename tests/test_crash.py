"""kill -9 a training run (between steps, or in the middle of a checkpoint write), resume it, and get
the loss trajectory of a run that was never interrupted."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import tiny_config_dict
from vidiff.config import config_from_dict
from vidiff.training import Trainer

STEPS = 6
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}   # the in-process reference runs on one thread too
# Dies by SIGKILL inside the third checkpoint: after its model weights are on disk, before the rest.
KILL_IN_WRITE = """
import os, signal, sys
from vidiff import checkpoint
calls, real = [0], checkpoint.save_file
def save_file(*args, **kwargs):
    calls[0] += 1
    if calls[0] == 6:                 # checkpoint 3 has written its model (5th call); its ema is next
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
checkpoint.save_file = save_file
from vidiff.cli import main
sys.argv = ["vidiff", *sys.argv[1:]]
main()
"""


def values():
    return tiny_config_dict(steps=STEPS, checkpoint_every=1, keep_last=2)


@pytest.fixture(scope="module")
def reference_losses(tmp_path_factory):
    run = tmp_path_factory.mktemp("reference") / "run"
    Trainer(config_from_dict(values()), run, progress=False).train()
    return losses(run)


def losses(run):
    folder = run / "checkpoints" / (run / "latest").read_text().strip()
    return [h["loss"] for h in json.loads((folder / "state.json").read_text())["history"]]


def latest_step(run) -> int:
    try:
        return int((run / "latest").read_text().strip().split("_")[1])
    except (OSError, IndexError, ValueError):
        return 0


def vidiff(*args, script=None):
    code = ["-c", script] if script else ["-m", "vidiff"]
    return subprocess.Popen([sys.executable, *code, *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def resume(run):
    result = subprocess.run([sys.executable, "-m", "vidiff", "train", "--out", str(run), "--resume", "--no-progress"],
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_kill_between_steps_then_resume_gives_the_same_losses(tmp_path, reference_losses):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(values()))
    run = tmp_path / "run"
    proc = vidiff("train", "--config", str(config), "--out", str(run), "--no-progress")
    deadline = time.time() + 120
    while latest_step(run) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = latest_step(run)
    assert 2 <= killed_at < STEPS
    resume(run)
    assert losses(run) == pytest.approx(reference_losses, rel=1e-6)


def test_kill_during_a_checkpoint_write_leaves_the_previous_one_usable(tmp_path, reference_losses):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(values()))
    run = tmp_path / "run"
    proc = vidiff("train", "--config", str(config), "--out", str(run), "--no-progress", script=KILL_IN_WRITE)
    proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert latest_step(run) == 2                                   # the pointer never saw step 3
    assert (run / "checkpoints" / ".step_00000003.tmp" / "model.safetensors").is_file()   # the torn write
    assert not (run / "checkpoints" / "step_00000003").exists()
    resume(run)
    assert losses(run) == pytest.approx(reference_losses, rel=1e-6)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000005", "step_00000006"]
