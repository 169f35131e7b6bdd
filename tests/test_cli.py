"""The CLI as a user meets it: a real subprocess, one-line errors, exit code 2."""
import subprocess
import sys

import pytest

from vidiff.config import Config


def vidiff(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vidiff", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_train_then_generate_from_the_run(tmp_path):
    from conftest import tiny_config_dict
    import yaml
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_config_dict(steps=2)))
    r = vidiff("train", "--config", tmp_path / "c.yaml", "--out", tmp_path / "run", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert '"steps": 2' in r.stdout
    r = vidiff("generate", "a green triangle bouncing", "--model", tmp_path / "run", "--frames", 2, "--steps", 2,
               "--out", tmp_path / "v.gif", "--sheet")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "v.gif").is_file() and (tmp_path / "v.png").is_file()


@pytest.mark.parametrize("args,message", [
    (["generate", "", "--out", "{tmp}/a.mp4"], "prompt is empty"),
    (["generate", "a purple circle", "--out", "{tmp}/a.mp4"], "unknown word 'purple'"),
    (["generate", "a red circle", "--out", "{tmp}/no/such/dir/a.mp4"], "does not exist"),
    (["generate", "a red circle", "--out", "{tmp}/a.avi"], "use one of the suffixes"),
    (["generate", "a red circle", "--size", "30", "--out", "{tmp}/a.mp4"], "multiples of 4"),
    (["generate", "a red circle", "--model", "{tmp}", "--out", "{tmp}/a.mp4"], "not a vidiff checkpoint"),
    (["train", "--config", "{tmp}/missing.yaml", "--out", "{tmp}/run"], "not found"),
    (["train", "--config", "{tmp}/bad.yaml", "--out", "{tmp}/run"], "unknown config key 'train.lrr'"),
    (["train", "--out", "{tmp}/run"], "pass --config"),
    (["train", "--config", "{tmp}/good.yaml", "--out", "{tmp}/good.yaml"], "is a file"),
    (["train", "--config", "{tmp}/good.yaml", "--out", "{tmp}/run", "--steps", "0"], "steps, batch_size"),
    (["generate", "a red circle", "--guidance", "nan", "--out", "{tmp}/a.mp4"], "finite number"),
    (["generate", "a red circle", "--sampler", "plms", "--out", "{tmp}/a.mp4"], "unknown sampler 'plms'"),
    (["data", "check", "{tmp}/nowhere"], "is not a folder"),
])
def test_bad_input_is_one_line_on_stderr(tmp_path, args, message):
    (tmp_path / "bad.yaml").write_text("train:\n  lrr: 0.1\n")
    (tmp_path / "good.yaml").write_text("train:\n  lr: 0.1\n")
    r = vidiff(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and message in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_existing_output_is_kept(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"keep me")
    r = vidiff("generate", "a red circle bouncing", "--out", tmp_path / "a.mp4")
    assert r.returncode == 2 and "already exists" in r.stderr
    assert (tmp_path / "a.mp4").read_bytes() == b"keep me"


def test_eval_ground_truth_writes_the_report(tmp_path):
    r = vidiff("eval", "--ground-truth", "--num", 3, "--out", tmp_path / "ev")
    assert r.returncode == 0, r.stderr
    assert "| permanence ↑ |" in r.stdout and "fvd_shapes" in r.stdout
    assert {p.name for p in (tmp_path / "ev").iterdir()} >= {"report.json", "report.md", "best_worst.png", "metrics.png"}


@pytest.mark.parametrize("args,message", [
    (["eval", "--out", "{tmp}/ev"], "exactly one of"),
    (["eval", "{tmp}", "--ground-truth", "--out", "{tmp}/ev"], "exactly one of"),
    (["eval", "{tmp}/nowhere", "--out", "{tmp}/ev"], "not a folder"),
    (["eval", "--ground-truth", "--num", "0", "--out", "{tmp}/ev"], "at least 1"),
])
def test_eval_bad_input(tmp_path, args, message):
    r = vidiff(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
