"""From image models to video (issue: scarce video): inflating an image checkpoint into a video model
(temporal layers start as identity, exactly), and freezing all but some parameters."""
import pytest
import torch

from conftest import tiny_config_dict
from vidiff.checkpoint import load_model
from vidiff.config import config_from_dict
from vidiff.errors import VidiffError
from vidiff.training import Trainer


def image_run(tmp_path, model_type="unet3d", **model):
    values = tiny_config_dict(steps=3, checkpoint_every=3)
    values["data"]["frames"] = 1
    if model_type == "dit":
        values["model"] = {"type": "dit", "dit": {"width": 32, "depth": 1, "head_dim": 16, **model},
                           "text": values["model"]["text"]}
    Trainer(config_from_dict(values), tmp_path / "image", progress=False).train()
    return values


@pytest.mark.parametrize("model_type", ["unet3d", "dit"])
def test_an_inflated_image_model_makes_the_image_models_frames_one_by_one(tmp_path, model_type):
    values = image_run(tmp_path, model_type)
    image, _, _ = load_model(tmp_path / "image")
    video_values = {**values, "data": {**values["data"], "frames": 4},
                    "train": {**values["train"], "init_from": str(tmp_path / "image")}}
    video = Trainer(config_from_dict(video_values), tmp_path / "video", progress=False).model.eval()
    torch.manual_seed(0)
    x, log_snr = torch.randn(2, 3, 4, 16, 16), torch.tensor([0.5, -1.0])
    ids = image.tokenizer.encode(["a red circle bouncing", "a blue square bouncing"])
    with torch.no_grad():
        together = video(x, log_snr, ids=ids)
        alone = torch.cat([image.eval()(x[:, :, t:t + 1], log_snr, ids=ids) for t in range(4)], dim=2)
    assert torch.allclose(together, alone, atol=1e-5), (together - alone).abs().max()


def test_inflating_a_dit_with_full_attention_is_a_clear_error(tmp_path):
    values = image_run(tmp_path, "dit", attention="full")
    video_values = {**values, "data": {**values["data"], "frames": 4},
                    "train": {**values["train"], "init_from": str(tmp_path / "image")}}
    with pytest.raises(VidiffError, match="cannot inflate .* factorized"):
        Trainer(config_from_dict(video_values), tmp_path / "video", progress=False)


def test_frozen_parameters_are_bit_identical_and_not_in_the_optimizer(tmp_path):
    image_run(tmp_path)          # AnimateDiff's setting: motion modules trained on a frozen image model
    values = tiny_config_dict(steps=3, trainable="temporal", init_from=str(tmp_path / "image"))
    trainer = Trainer(config_from_dict(values), tmp_path / "run", progress=False)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    temporal = {n for n in trainer.trainable}
    assert changed and changed <= temporal and all(".temporal." in n or "_t." in n for n in temporal)
    frozen = [p for n, p in trainer.model.named_parameters() if n not in temporal]
    assert frozen and not any(id(p) in optimized for p in frozen)
    with pytest.raises(VidiffError, match="matches no parameter"):
        Trainer(config_from_dict(tiny_config_dict(trainable="backbone.nothing*")), tmp_path / "run2", progress=False)
