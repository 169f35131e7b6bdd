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
    (["generate", "a red circle", "--size", "30", "--out", "{tmp}/a.mp4"], "--size a multiple of 8"),
    (["generate", "a red circle", "--frames", "0", "--out", "{tmp}/a.mp4"], "(--frames) must be a whole number >= 1"),
    (["generate", "a red circle", "--steps", "0", "--out", "{tmp}/a.mp4"], "steps (--steps) must be a whole number from 1"),
    (["generate", "a white circle bouncing", "--out", "{tmp}/a.mp4"], "unknown word 'white'"),   # never in its data
    (["generate", "a red circle", "--spacing", "cubic", "--out", "{tmp}/a.mp4"], "unknown spacing (--spacing) 'cubic'"),
    (["generate", "a red circle", "--model", "{tmp}", "--out", "{tmp}/a.mp4"], "not a vidiff checkpoint"),
    (["train", "--config", "{tmp}/missing.yaml", "--out", "{tmp}/run"], "not found"),
    (["train", "--config", "{tmp}/bad.yaml", "--out", "{tmp}/run"], "unknown config key 'train.lrr'"),
    (["train", "--out", "{tmp}/run"], "pass --config"),
    (["train", "--config", "{tmp}/good.yaml", "--out", "{tmp}/good.yaml"], "is a file"),
    (["train", "--config", "{tmp}/good.yaml", "--out", "{tmp}/run", "--steps", "0"], "--steps (train.steps) must be >= 1"),
    (["train", "--config", "{tmp}/nan-lr.yaml", "--out", "{tmp}/run"], "'train.lr' must be a finite number"),
    (["train", "--config", "{tmp}/neg-lr.yaml", "--out", "{tmp}/run"], "'train.lr' must be > 0"),
    (["train", "--config", "{tmp}/ema.yaml", "--out", "{tmp}/run"], "'train.ema_decay' must be >= 0 and <= 1"),
    (["train", "--config", "{tmp}/clip.yaml", "--out", "{tmp}/run"], "'train.grad_clip' must be > 0"),
    (["train", "--config", "{tmp}/every.yaml", "--out", "{tmp}/run"], "'train.checkpoint_every' must be >= 1"),
    (["train", "--config", "{tmp}/schedule.yaml", "--out", "{tmp}/run"], "'diffusion.schedule' is 'sigmoid'; choose one of: cosine"),
    (["train", "--config", "{tmp}/flat.yaml", "--out", "{tmp}/run"], "unknown config key 'model.base_channels'"),
    (["generate", "a red circle", "--guidance", "nan", "--out", "{tmp}/a.mp4"], "finite number"),
    (["generate", "a red circle", "--sampler", "plms", "--out", "{tmp}/a.mp4"], "unknown sampler (--sampler) 'plms'"),
    (["data", "check", "{tmp}/nowhere"], "is not a folder"),
    (["generate", "a red circle", "--seed", "99999999999999999999999", "--out", "{tmp}/a.mp4"], "--seed must be 0 to"),
    (["generate", "a red circle", "--out", "/proc/x.mp4"], "cannot write '/proc/x.mp4'"),
    (["generate", "a red circle", "--out", "{tmp}/folder.mp4", "--overwrite"], "it is a folder"),
    (["generate", "a red circle and a blue square and a green triangle", "--out", "{tmp}/a.mp4"],
     "names 3 objects; this model was trained on clips of at most 2"),
    (["generate", "a red circle", "--size", "2048", "--out", "{tmp}/a.mp4"], "4096 times the 16x32x32"),
    (["generate", "a red circle", "--guidance", "-1", "--out", "{tmp}/a.mp4"], "guidance scale (--guidance) must be"),
    (["generate", "a red circle", "--eta", "nan", "--out", "{tmp}/a.mp4"], "--eta must be a finite number"),
    (["generate", "a red circle", "--model", "{tmp}/banana", "--out", "{tmp}/a.mp4"], "unknown model.type 'banana'"),
    (["train", "--config", "{tmp}/empty.yaml", "--out", "{tmp}/run"], "is empty"),
    (["serve", "--port", "70000"], "--port must be 1 to 65535"),
    # accepted silently before, then a black, noise or endless video (issue 34), or a traceback (issue 32)
    (["generate", "a red circle", "--guidance", "1e30", "--out", "{tmp}/a.mp4"], "from 0 to 50"),
    (["generate", "a red circle", "--lora-scale", "0.5", "--out", "{tmp}/a.mp4"], "give --lora PATH too"),
    (["generate", "a red circle", "--scale", "1000", "--out", "{tmp}/a.mp4"], "--scale must be 1 to 64"),
    (["generate", "a red circle", "--zero-shot", "--motion", "nan,0", "--out", "{tmp}/a.mp4"], "motion"),
    (["extend", "{tmp}/folder.mp4", "a red circle", "--frames", "100000000", "--out", "{tmp}/a.mp4"],
     "whole number from 1 to 10000"),
    (["eval", "--ground-truth", "--gravity", "inf", "--out", "{tmp}/ev"], "--gravity must be a finite number"),
    (["train", "--config", "{tmp}/gravity.yaml", "--out", "{tmp}/run"], "'data.shapes.gravity' must be"),
    (["train", "--config", "{tmp}/seed.yaml", "--out", "{tmp}/run"], "'train.seed' must be"),
    (["train", "--config", "{tmp}/sequence.yaml", "--out", "{tmp}/run"], "train.parallel: sequence splits a DiT"),
    (["generate", "a red circle \U0001F642", "--out", "{tmp}/a.mp4"], "unknown word '\U0001F642'"),   # not dropped
    (["generate", "a red " + "x" * 10_000, "--out", "{tmp}/a.mp4"], "(10006 characters)"),
    (["serve", "--host", "999.1.1.1"], "--host '999.1.1.1' is not an address"),
    (["export", "default", "{tmp}/good.yaml"], "is an existing file, not a checkpoint folder"),
])
def test_bad_input_is_one_line_on_stderr(tmp_path, args, message):
    for name, text in {"bad": "train:\n  lrr: 0.1\n", "good": "train:\n  lr: 0.1\n", "nan-lr": "train:\n  lr: .nan\n",
                       "neg-lr": "train:\n  lr: -1.0\n", "ema": "train:\n  ema_decay: 5.0\n",
                       "clip": "train:\n  grad_clip: -1.0\n", "every": "train:\n  checkpoint_every: 0\n",
                       "schedule": "diffusion:\n  schedule: sigmoid\n", "flat": "model:\n  base_channels: 8\n", "empty": "",
                       "gravity": "data:\n  shapes:\n    gravity: 1.0e9\n", "seed": "train:\n  seed: 35184372088832\n",
                       "sequence": "train:\n  parallel: sequence\n"}.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    (tmp_path / "folder.mp4").mkdir()
    (tmp_path / "banana").mkdir()
    (tmp_path / "banana" / "config.json").write_text('{"model": {"type": "banana"}}')
    (tmp_path / "banana" / "model.safetensors").write_bytes(b"")
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


def test_eval_known_continues_true_frames_and_scores_against_the_simulator(tmp_path):
    import json
    r = vidiff("eval", "--model", "default", "--known", 4, "--num", 2, "--out", tmp_path / "ev")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    summary = report.get("summary", report)
    # the default model continues its own world's clips: within a pixel a frame of the simulator
    assert 0 <= summary["truth_velocity_error_px"] < 1.0 and "continuing 4 ground-truth frames" in \
        (tmp_path / "ev" / "report.md").read_text()


@pytest.mark.parametrize("args,message", [
    (["eval", "--out", "{tmp}/ev"], "exactly one of"),
    (["eval", "{tmp}", "--ground-truth", "--out", "{tmp}/ev"], "exactly one of"),
    (["eval", "{tmp}/nowhere", "--out", "{tmp}/ev"], "not a folder"),
    (["eval", "--ground-truth", "--num", "0", "--out", "{tmp}/ev"], "at least 1"),
    (["eval", "--ground-truth", "--known", "4", "--out", "{tmp}/ev"], "give --model"),
    (["eval", "--model", "default", "--known", "16", "--num", "1", "--out", "{tmp}/ev"], "1 to 15 given frames"),
    (["reconstruct", "{tmp}", "{tmp}/out.mp4", "--vae", "{tmp}"], "is a folder; give a video file"),
])
def test_eval_bad_input(tmp_path, args, message):
    r = vidiff(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_eval_skips_unreadable_files_and_keeps_an_existing_report(tmp_path):
    from vidiff.config import DataConfig
    from vidiff.data.io import save_video
    from vidiff.evaluation.sources import ground_truth
    videos = tmp_path / "videos"
    videos.mkdir()
    for name, clip, caption in zip(*ground_truth(DataConfig(), 2)):
        save_video(clip, videos / f"{name}.mp4")
        (videos / f"{name}.txt").write_text(caption)
    (videos / "broken.mp4").write_bytes(b"not a video at all")
    r = vidiff("eval", videos, "--out", tmp_path / "ev")
    assert r.returncode == 0, r.stderr
    assert "skip  broken.mp4: cannot decode video" in r.stdout and "Errno" not in r.stdout
    assert '"videos": 2' in (tmp_path / "ev" / "report.json").read_text()
    r = vidiff("eval", videos, "--out", tmp_path / "ev")
    assert r.returncode == 2 and "already holds a report; pass --overwrite" in r.stderr
    assert vidiff("eval", videos, "--out", tmp_path / "ev", "--overwrite").returncode == 0


@pytest.mark.slow   # in CI's second pass (.ci/run), not the default suite
def test_resuming_a_finished_run_says_there_is_nothing_to_do_and_a_damaged_checkpoint_is_one_line(tmp_path):
    from conftest import tiny_config_dict
    import yaml
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_config_dict(steps=2, checkpoint_every=1)))
    assert vidiff("train", "--config", tmp_path / "c.yaml", "--out", tmp_path / "run", "--no-progress").returncode == 0
    r = vidiff("train", "--out", tmp_path / "run", "--resume")
    assert r.returncode == 2 and "nothing to do" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    last = tmp_path / "run" / "checkpoints" / "step_00000002"
    for damaged in ("optimizer.pt", "state.json"):       # a crash or a full disk cut a file short
        saved = (last / damaged).read_bytes()
        (last / damaged).write_bytes(saved[:len(saved) // 2])
        r = vidiff("train", "--out", tmp_path / "run", "--resume", "--steps", 3)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert f"step_00000002' is damaged ({damaged}" in r.stderr and "step_00000001" in r.stderr, r.stderr
        (last / damaged).write_bytes(saved)
    for step in ("step_00000001", "step_00000002"):        # both damaged: no advice to resume from a broken one
        (tmp_path / "run" / "checkpoints" / step / "state.json").write_text("{")
    r = vidiff("train", "--out", tmp_path / "run", "--resume", "--steps", 3)
    assert r.returncode == 2 and "no earlier checkpoint is intact either" in r.stderr, r.stderr


def test_version():
    from vidiff import __version__
    r = vidiff("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"vidiff {__version__}"
