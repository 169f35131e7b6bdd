"""What a new user meets first: messages that point the right way, refusals that come before the wait,
and short runs that stay short."""
import json
import shutil

import numpy as np
import pytest
from conftest import tiny_config_dict

from vidiff.config import config_from_dict
from vidiff.errors import VidiffError
from vidiff.training import Trainer


def test_resuming_a_finished_run_says_so_before_loading_anything(tmp_path, monkeypatch):
    cfg = config_from_dict(tiny_config_dict(steps=2, sample_every=100, checkpoint_every=2))
    Trainer(cfg, tmp_path / "run", progress=False).train()
    from vidiff.training import diffusion

    def never(*args, **kwargs):
        raise AssertionError("the model was built before the refusal")
    monkeypatch.setattr(diffusion.DiffusionTask, "__init__", never)
    with pytest.raises(VidiffError, match="already finished its 2 steps"):
        Trainer(cfg, tmp_path / "run", resume=True, progress=False)


def test_a_short_run_pays_for_a_short_sample_sheet(tmp_path, capsys):
    cfg = config_from_dict(tiny_config_dict(steps=3, sample_every=100, checkpoint_every=3, sample_steps=0))
    trainer = Trainer(cfg, tmp_path / "run", progress=True)
    assert trainer.task.sample_options().steps == 3          # not the model's 25: no more sheet than training
    trainer.train()
    said = "".join(capsys.readouterr())
    assert "sample sheet" in said and "4 videos, 3 steps" in said     # and what it cost
    assert (tmp_path / "run" / "samples" / "step_00000003.png").is_file()


def test_a_folder_that_is_no_model_says_what_either_kind_needs(tmp_path):
    from vidiff.pipeline import VideoPipeline
    (tmp_path / "empty").mkdir()
    with pytest.raises(VidiffError, match="nor a diffusers-format model directory \\(needs model_index.json"):
        VideoPipeline.from_pretrained(tmp_path / "empty")


def test_a_pretrained_recipe_takes_no_own_model_keys_and_writes_none(tmp_path):
    with pytest.raises(VidiffError, match="model.type describes vidiff's own backbones"):
        config_from_dict({"model": {"pretrained": str(tmp_path), "type": "dit"}})
    cfg = config_from_dict({"model": {"pretrained": str(tmp_path)}, "data": {"type": "folder"}})
    assert set(cfg.to_dict()["model"]) == {"pretrained", "pretrained_checkpointing", "blocks_to_swap", "offload_activations", "fp8_base"}


def test_data_check_reads_free_text_captions_for_a_pretrained_model(tmp_path):
    from vidiff.data.io import save_video
    from vidiff.data.video_folder import check_folder
    (tmp_path / "clips").mkdir()
    save_video(np.zeros((9, 32, 32, 3), np.uint8), tmp_path / "clips" / "a.mp4")
    (tmp_path / "clips" / "a.txt").write_text("a ball rolls across the table")
    (tmp_path / "recipe.yaml").write_text(f"model:\n  pretrained: {tmp_path}\ndata:\n  type: folder\n  frames: 9\n")
    dataset = check_folder(tmp_path / "clips", tmp_path / "recipe.yaml", multiple=16)
    assert len(dataset.entries) == 1 and not dataset.skipped


def test_an_empty_scheduler_config_is_one_line(tmp_path):
    pytest.importorskip("diffusers")
    from vidiff.models.external.random_wan import save_random_wan
    from vidiff.pipeline import VideoPipeline
    folder = save_random_wan(tmp_path / "wan")
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({}))
    with pytest.raises(VidiffError, match="names no diffusers scheduler class"):
        VideoPipeline.from_pretrained(folder)
    shutil.rmtree(folder / "scheduler")
    with pytest.raises(VidiffError, match="has no 'scheduler' component"):
        VideoPipeline.from_pretrained(folder)


def test_a_short_run_reaches_its_learning_rate_and_sample_every_0_is_never(tmp_path, capsys):
    from vidiff.training.lr import learning_rate
    cfg = config_from_dict({"train": {"steps": 12, "lr": 1e-3, "lr_decay": "constant"}})
    assert cfg.train.warmup_steps == 100 and learning_rate(cfg.train, 1) == 1e-3
    long = config_from_dict({"train": {"steps": 10_000, "lr": 1e-3}})
    assert learning_rate(long.train, 49) == pytest.approx(0.5e-3)        # a long run keeps its warm-up
    values = tiny_config_dict(steps=2, sample_every=0, checkpoint_every=2, warmup_steps=5)
    Trainer(config_from_dict(values), tmp_path / "run", progress=False).train()
    assert not (tmp_path / "run" / "samples").exists()
    out = capsys.readouterr().out       # a warm-up as long as the run is said, in one line
    assert "train.warmup_steps 5 is as long as the run (2 steps)" in out and "over 1 steps instead" in out


def test_resume_refuses_a_changed_adapter(tmp_path):
    values = tiny_config_dict(steps=2, checkpoint_every=2, lora={"rank": 2})
    Trainer(config_from_dict(values), tmp_path / "run", progress=False).train()
    values["train"].update(steps=4, lora={"rank": 4})
    with pytest.raises(VidiffError, match="train.lora differs"):
        Trainer(config_from_dict(values), tmp_path / "run", resume=True, progress=False)


def test_sample_prompts_and_block_swap_are_for_pretrained_runs(tmp_path):
    with pytest.raises(VidiffError, match="train.sample_prompts is for a pretrained model's run"):
        config_from_dict({"train": {"sample_prompts": ["a red circle"]}})
    with pytest.raises(VidiffError, match="model.blocks_to_swap streams a pretrained"):
        config_from_dict({"model": {"blocks_to_swap": 2}})
