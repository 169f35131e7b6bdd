"""The contract every trainable network meets from its real initialisation: a few optimizer steps on
random data move every parameter. A parameter that cannot move is dead weight, as the DiT's attention
was when its output projection and the adaLN gate in front of it were both initialised to zero."""
import dataclasses

import pytest
import torch

from vidiff.config import DiTConfig, ModelConfig, TextConfig, UNetConfig
from vidiff.diffusion.conditioning import frame_condition, frame_mask
from vidiff.models import build_model
from vidiff.models.vae import VideoVAE

TEXT = TextConfig(dim=32, layers=1, heads=2)
BACKBONES = {
    "unet3d": ModelConfig(unet3d=UNetConfig(base_channels=16, channel_mults=[1, 2], attention_levels=[0, 1], head_dim=16,
                                            groups=8), text=TEXT),
    "dit-factorized": ModelConfig(type="dit", dit=DiTConfig(width=32, depth=2, head_dim=16, attention="factorized"), text=TEXT),
    "dit-full": ModelConfig(type="dit", dit=DiTConfig(width=32, depth=2, head_dim=16, attention="full"), text=TEXT),
}
for _name in ("unet3d", "dit-factorized"):     # and with the frame input of masked-frame models
    BACKBONES[_name + "-frames"] = dataclasses.replace(BACKBONES[_name], frame_conditioning=True)


def frozen_parameters(model: torch.nn.Module, loss_fn, steps: int = 3) -> list[str]:
    """Names of parameters that are bit-identical after `steps` AdamW steps on loss_fn(model)."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(model).backward()
        optimizer.step()
    return [n for n, p in model.named_parameters() if torch.equal(p.detach(), before[n])]


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_parameter_trains_from_its_real_init(name):
    torch.manual_seed(0)
    model = build_model(BACKBONES[name])
    x, target = torch.randn(2, 3, 4, 8, 8), torch.randn(2, 3, 4, 8, 8)
    ids = model.tokenizer.encode(["a red circle bouncing", "a blue square and a green triangle bouncing"])
    log_snr = torch.tensor([-2.0, 3.0])
    frames = frame_condition(torch.randn(2, 3, 4, 8, 8), frame_mask("first_k", 4, 2)) if model.frame_conditioning else None
    loss = lambda m: (m(x, log_snr, frames=frames, ids=ids) - target).pow(2).mean()
    assert frozen_parameters(model, loss) == []


@pytest.mark.parametrize("temporal_downsample", [1, 4])
def test_every_vae_parameter_trains_from_its_real_init(temporal_downsample):
    torch.manual_seed(0)
    vae = VideoVAE(3, 8, (1, 2, 2), 4, temporal_downsample)
    x = torch.rand(2, 3, 5, 16, 16) * 2 - 1

    def loss(m):
        recon, mean, logvar = m(x, torch.Generator().manual_seed(0))
        return (recon - x).abs().mean() + 1e-3 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
    assert frozen_parameters(vae, loss) == []
