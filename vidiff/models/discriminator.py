"""A space-time PatchGAN discriminator for VAE training (the optional adversarial term).

Strided 3D convolutions give one real/fake logit per space-time patch (as in the 3D discriminators of
MAGVIT and the Open-Sora VAE), so it judges local texture and motion, not whole scenes, and works on
any clip length including 1-frame images. Time keeps stride 1: clips here are short.
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F


class PatchDiscriminator3D(nn.Module):
    def __init__(self, in_channels: int = 3, channels: int = 32, layers: int = 3):
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv3d(in_channels, channels, (3, 4, 4), (1, 2, 2), (1, 1, 1)), nn.LeakyReLU(0.2)]
        width = channels
        for _ in range(1, layers):
            blocks += [nn.Conv3d(width, width * 2, (3, 4, 4), (1, 2, 2), (1, 1, 1)),
                       nn.GroupNorm(min(32, width // 2), width * 2), nn.LeakyReLU(0.2)]
            width *= 2
        blocks.append(nn.Conv3d(width, 1, 3, padding=1))
        self.net = nn.Sequential(*blocks)

    def forward(self, video: Tensor) -> Tensor:
        """(B, C, T, H, W) in [-1, 1] -> (B, 1, T, H / 2^layers, W / 2^layers) logits."""
        return self.net(video)


def discriminator_hinge_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    return -fake_logits.mean()
