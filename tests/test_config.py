import pytest

from vidiff.config import Config, config_from_dict, load_config
from vidiff.errors import VidiffError


def test_defaults_validate_and_round_trip_through_json(tmp_path):
    cfg = config_from_dict({})
    cfg.save(tmp_path / "c.json")
    assert load_config(tmp_path / "c.json") == cfg == Config()


@pytest.mark.parametrize("values,message", [
    ({"train": {"lrr": 1}}, "unknown config key 'train.lrr'"),
    ({"modle": {}}, "unknown config key 'modle'"),
    ({"train": {"steps": "many"}}, "'train.steps' must be int"),
    ({"train": {"lr": "fast"}}, "'train.lr' must be float"),
    ({"diffusion": {"prediction": "score"}}, "choose one of: eps, x0, v"),
    ({"data": {"size": 30}}, "must give a multiple of 4"),
    ({"model": {"type": "dit", "patch": [2, 2, 2]}, "data": {"frames": 5}}, "data.frames 5 a multiple of 2"),
    ({"model": {"type": "dit", "head_dim": 24}}, "multiple of 16"),
    ({"model": {"type": "dit", "attention": "sparse"}}, "choose one of: factorized, full"),
    ({"data": {"colours": ["red", "purple"]}}, "unknown colour 'purple'"),
    ({"model": {"attention_levels": [5]}}, "must index the 3 levels"),
    ({"data": {"max_objects": 9}}, "max_objects"),
])
def test_bad_configs_get_one_line_errors(values, message):
    with pytest.raises(VidiffError, match=message) as e:
        config_from_dict(values)
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


def test_shipped_recipe_is_valid():
    from pathlib import Path
    load_config(Path(__file__).parents[1] / "configs" / "tiny-shapes.yaml")


def test_yaml_exponents_without_a_dot_are_numbers(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  lr: 1e-4\nvae:\n  kl_weight: 1e-6\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.train.lr == 1e-4 and cfg.vae.kl_weight == 1e-6
