import json
from pathlib import Path

import pytest

from vidiff.checkpoint import read_config, upgrade_config_dict
from vidiff.config import Config, config_from_dict, load_config
from vidiff.errors import VidiffError
from vidiff.training.options import validate_training

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def test_defaults_validate_and_round_trip_through_json(tmp_path):
    cfg = validate_training(config_from_dict({}))
    cfg.save(tmp_path / "c.json")
    assert load_config(tmp_path / "c.json") == cfg == Config()


def test_a_saved_config_keeps_only_the_chosen_backbone_and_data_source(tmp_path):
    cfg = config_from_dict({"model": {"type": "dit"}})
    saved = cfg.to_dict()
    assert "dit" in saved["model"] and "unet3d" not in saved["model"]
    assert "shapes" in saved["data"] and "folder" not in saved["data"]


@pytest.mark.parametrize("values,message", [
    ({"train": {"lrr": 1}}, "unknown config key 'train.lrr'"),
    ({"modle": {}}, "unknown config key 'modle'"),
    ({"model": {"width": 64}}, "unknown config key 'model.width'"),                # belongs in model.dit
    ({"model": {"unet3d": {"depth": 4}}}, "unknown config key 'model.unet3d.depth'"),
    ({"train": {"steps": "many"}}, "'train.steps' must be int"),
    ({"train": {"lr": "fast"}}, "'train.lr' must be float"),
    ({"train": {"lr": float("nan")}}, "'train.lr' must be a finite number"),
    ({"train": {"lr": -1.0}}, "'train.lr' must be > 0"),
    ({"train": {"ema_decay": 5.0}}, "'train.ema_decay' must be >= 0 and <= 1"),
    ({"train": {"grad_clip": -1.0}}, "'train.grad_clip' must be > 0"),
    ({"train": {"cfg_dropout": 1.0}}, "'train.cfg_dropout' must be >= 0 and < 1"),
    ({"train": {"log_every": 0}}, "'train.log_every' must be >= 1"),
    ({"train": {"sample_every": -1}}, "'train.sample_every' must be >= 0"),
    ({"train": {"checkpoint_every": 0}}, "'train.checkpoint_every' must be >= 1"),
    ({"data": {"shapes": {"radius": [0.1, -0.2]}}}, "'data.shapes.radius' must be > 0"),
    ({"data": {"shapes": {"colours": ["red", "purple"]}}}, "unknown colour 'purple'"),
    ({"data": {"shapes": {"max_objects": 9}}}, "max_objects"),
    ({"data": {"shapes": {"speed": [0.06, 0.02]}}}, "low <= high"),
    ({"diffusion": {"prediction": "score"}}, "choose one of: eps, x0, v"),
    ({"data": {"size": 30}}, "must give a multiple of 4"),
    ({"model": {"type": "dit", "dit": {"patch": [2, 2, 2]}}, "data": {"frames": 5}}, "data.frames 5 a multiple of 2"),
    ({"model": {"type": "dit", "dit": {"head_dim": 24}}}, "multiple of 16"),
    ({"model": {"type": "dit", "dit": {"attention": "sparse"}}}, "choose one of: full, factorized"),
    ({"model": {"unet3d": {"attention_levels": [5]}}}, "must index the 3 levels"),
    ({"train": {"precision": "fp8"}}, "'train.precision' is 'fp8'; choose one of: auto, fp32, bf16"),
    ({"data": {"type": "webdataset"}}, "'data.type' is 'webdataset'; choose one of: shapes, folder"),
])
def test_bad_configs_get_one_line_errors(values, message):
    with pytest.raises(VidiffError, match=message) as e:
        validate_training(config_from_dict(values))
    assert "\n" not in str(e.value)


def test_yaml_file_errors(tmp_path):
    with pytest.raises(VidiffError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("train: [1, 2\n")
    with pytest.raises(VidiffError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "ok.yaml").write_text("train:\n  steps: 7\n  lr: 1\n")
    cfg = load_config(tmp_path / "ok.yaml")
    assert cfg.train.steps == 7 and cfg.train.lr == 1.0


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_recipe_is_valid(path):
    validate_training(load_config(path))


def test_yaml_exponents_without_a_dot_are_numbers(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  lr: 1e-4\nvae:\n  kl_weight: 1e-6\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.train.lr == 1e-4 and cfg.vae.kl_weight == 1e-6


LEGACY = {   # a config.json of the flat layout (runs written before backbone and data sub-sections)
    "model": {"type": "dit", "in_channels": 4, "base_channels": 64, "channel_mults": [1, 2], "num_res_blocks": 1,
              "attention_levels": [1], "head_dim": 32, "groups": 16, "width": 128, "depth": 4, "patch": [1, 1, 1],
              "attention": "factorized", "activation_checkpointing": False},
    "diffusion": {"schedule": "cosine", "prediction": "v", "loss_weighting": "min_snr", "space": "latent"},
    "data": {"type": "shapes", "frames": 16, "size": 32, "min_objects": 1, "max_objects": 2,
             "colours": ["red", "green"], "shapes": ["circle", "square", "triangle"], "radius": [0.15, 0.22],
             "speed": [0.03, 0.07], "gravity": 0.0, "num_clips": 0, "seed": 3, "path": "", "frame_stride": 1,
             "fps": 0.0, "crop": "center", "image_every": 4, "workers": 0, "fixed_clips": False},
    "vae": {"channels": 16, "latent_scale": 0.8},
}


def test_old_flat_configs_load_into_sub_sections(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LEGACY))
    cfg = read_config(tmp_path)
    assert cfg.model.dit.width == 128 and cfg.model.dit.head_dim == 32 and cfg.model.in_channels == 4
    assert cfg.data.shapes.colours == ["red", "green"] and cfg.data.seed == 3
    assert "space" not in upgrade_config_dict(LEGACY)["diffusion"]


def test_prompts_may_only_use_words_the_data_shows():
    cfg = config_from_dict({"model": {"text": {"vocab": ["a", "and", "bouncing", "red", "white", "circle",
                                                         "square", "triangle"]}},
                            "data": {"shapes": {"colours": ["red"], "max_objects": 1}}})
    assert "white" not in cfg.trained_words() and "red" in cfg.trained_words()
