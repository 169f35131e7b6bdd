"""Training the video VAE: L1 + squared error + L1 on spatial and temporal finite differences + a small KL.

The squared error matters on sparse frames: with L1 alone a small VAE trained on small objects over a
black background settled on the background (the median) and stayed there; squared error keeps
paying for every missed object pixel.

The gradient term stands in for a perceptual loss, which would need downloaded network weights:
it penalises blurred edges and frame-to-frame jitter directly. An adversarial term (vae.adversarial_weight,
off by default) adds a 3D PatchGAN with hinge losses; its weight is rescaled every step so that its
gradient at the decoder's last layer matches the reconstruction gradient there (VQGAN's balance).
It runs in the same training loop as diffusion (vidiff/training/trainer.py): EMA, gradient
accumulation, precision, DDP, time limit, checkpoints and resume behave alike.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..checkpoint import VAE_TYPE, load_weights
from ..config import Config
from ..data import build_dataset, collate
from ..data.io import save_video, tile, to_uint8, upscale
from ..data.splits import HELD_OUT
from ..data.worlds import world_of
from ..devices import generator_on
from ..errors import VidiffError
from ..models import build_vae
from ..models.discriminator import PatchDiscriminator3D, discriminator_hinge_loss, generator_adversarial_loss
from ..models.vae import VideoVAE, latent_frames
from .optim import fused_adamw, keep_fused, skip_unless
from .run_folder import RunFolder
from .task import Task


def finite_differences(x: torch.Tensor) -> list[torch.Tensor]:
    """Differences along time, height and width of (B, C, T, H, W)."""
    return [x.diff(dim=d) for d in (2, 3, 4) if x.shape[d] > 1]


def weighted_mean(x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of x, each pixel counted `weights` times (weights broadcast over x; None = plain mean)."""
    if weights is None:
        return x.mean()
    weights = weights.expand_as(x)
    return (x * weights).sum() / weights.sum()


def vae_loss(cfg: Config, recon: torch.Tensor, target: torch.Tensor, mean: torch.Tensor,
             logvar: torch.Tensor, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """weights: (B, 1, T, H, W) per-pixel weights of the reconstruction terms (vae.overlap_weight), or
    None. A finite difference takes the larger weight of its two pixels."""
    l1 = weighted_mean((recon - target).abs(), weights)
    mse = weighted_mean((recon - target).pow(2), weights)
    pair_weights = [None] * 3 if weights is None else \
        [torch.maximum(weights.narrow(d, 0, weights.shape[d] - 1), weights.narrow(d, 1, weights.shape[d] - 1))
         for d in (2, 3, 4) if weights.shape[d] > 1]
    grad = sum(weighted_mean((a - b).abs(), w)
               for a, b, w in zip(finite_differences(recon), finite_differences(target), pair_weights))
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
    loss = l1 + cfg.vae.mse_weight * mse + cfg.vae.gradient_weight * grad + cfg.vae.kl_weight * kl
    return loss, {"l1": l1.detach(), "mse": mse.detach(), "grad": grad.detach(), "kl": kl.detach()}   # read at log time


def adaptive_weight(reconstruction: torch.Tensor, adversarial: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """The adversarial weight that gives its gradient at `last_layer` the reconstruction gradient's norm
    (0-dim, detached: a weight, not a path for gradients)."""
    rec = torch.autograd.grad(reconstruction, last_layer, retain_graph=True)[0].norm()
    adv = torch.autograd.grad(adversarial, last_layer, retain_graph=True)[0].norm()
    return (rec / (adv + 1e-4)).clamp(0, 1e4).detach()


def validate_vae_config(cfg: Config) -> None:
    v, d = cfg.vae, cfg.data
    if len(v.channel_mults) < 3 and v.temporal_downsample == 4:
        raise VidiffError("vae.temporal_downsample 4 needs at least 3 vae.channel_mults levels")
    if latent_frames(d.frames, v.temporal_downsample) is None:
        raise VidiffError(f"data.frames {d.frames} must be 1 + {v.temporal_downsample}k for vae.temporal_downsample "
                          f"{v.temporal_downsample} (e.g. {1 + v.temporal_downsample * 4})")
    if d.size % 2 ** (len(v.channel_mults) - 1):
        raise VidiffError(f"data.size {d.size} must be divisible by {2 ** (len(v.channel_mults) - 1)}")


class VAETask(Task):
    model_type = VAE_TYPE
    sections = ("vae", "data")

    def __init__(self, cfg: Config, device: torch.device, resume: Path | None = None):
        validate_vae_config(cfg)
        self.cfg, self.device = cfg, device
        self.dataset = build_dataset(cfg.data, captions=False)
        if cfg.data.type == "folder":      # clips at their aspect ratio: sides a multiple of the VAE's factor
            self.dataset.fit(cfg.vae.spatial_factor(), cfg.vae.temporal_downsample)
        self.model = self.new_model().to(device)
        self.disc = self.disc_optimizer = self.pending = None
        if cfg.vae.adversarial_weight > 0:
            if torch.distributed.is_initialized():
                raise VidiffError("vae.adversarial_weight needs a single process (its adaptive weight takes "
                                  "gradients outside DDP); train without torchrun or set it to 0")
            self.disc = PatchDiscriminator3D(cfg.vae.in_channels, cfg.vae.discriminator_channels).to(device)
            self.disc_optimizer = fused_adamw(self.disc.parameters(), cfg.train.lr, cfg.train.weight_decay, (0.5, 0.9))

    def new_model(self) -> VideoVAE:
        return build_vae(self.cfg.vae)

    def loss(self, net: nn.Module, batch: dict, generator: torch.Generator, part: slice, autocast) -> tuple[Tensor, dict]:
        video = batch["video"].to(self.device, non_blocking=True)
        with autocast:
            recon, mean, logvar = net(video, generator_on(generator, self.device), self.cfg.vae.latent_noise)
        loss, parts = vae_loss(self.cfg, recon.float(), video, mean.float(), logvar.float(), self.overlap_weights(batch))
        if self.disc is not None and self.step_of(batch) >= self.cfg.vae.adversarial_start:
            fake = generator_adversarial_loss(self.disc(recon))
            weight = self.cfg.vae.adversarial_weight * adaptive_weight(loss, fake, self.model.decoder[-1].weight)
            loss = loss + weight * fake
            parts.update(adversarial=fake.detach(), adversarial_weight=weight)
            self.pending = (video, recon.detach())
        return loss, parts

    def overlap_weights(self, batch: dict) -> Tensor | None:
        """1 + vae.overlap_weight where objects overlap (the data's world: data/worlds.py), else None:
        an L1/L2 decoder unsure which object is in front draws the mean of both colours there, and
        those few pixels are too rare in the plain mean to pay for drawing one in front."""
        weights = world_of(self.cfg.data).overlap_weights(batch, self.cfg.vae.overlap_weight)
        return None if weights is None else weights.to(self.device, non_blocking=True)

    def step_of(self, batch: dict) -> int:
        return batch["index"] // self.cfg.train.grad_accum

    def after_step(self, step: int) -> dict:
        """The discriminator's step on the clips and reconstructions of the generator's step."""
        if self.pending is None:
            return {}
        real, fake = self.pending
        self.pending = None
        self.disc_optimizer.zero_grad(set_to_none=True)
        d_loss = discriminator_hinge_loss(self.disc(real), self.disc(fake))
        d_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.disc.parameters(), self.cfg.train.grad_clip)
        skip_unless(self.disc_optimizer, torch.isfinite(d_loss))
        return {"discriminator": d_loss.detach()}

    def extra_weights(self) -> dict:
        return {"discriminator": self.disc} if self.disc is not None else {}

    def extra_optimizers(self) -> dict:
        return {"discriminator": self.disc_optimizer.state_dict()} if self.disc is not None else {}

    def resume(self, folder: Path, optimizers: dict) -> None:
        if self.disc is None:
            return
        if not (folder / "discriminator.safetensors").is_file() or "discriminator" not in optimizers:
            raise VidiffError(f"checkpoint '{folder}' has no discriminator; resume with the run's own config.json")
        load_weights(self.disc, folder / "discriminator.safetensors", "discriminator")
        self.disc_optimizer.load_state_dict(optimizers["discriminator"])
        keep_fused(self.disc_optimizer)

    @torch.no_grad()
    def write_samples(self, model: nn.Module, run: RunFolder, step: int) -> None:
        """Held-out clips (top) over their reconstructions (bottom), as a GIF."""
        video = collate([self.dataset.item(0, HELD_OUT + i, 4) for i in range(4)])["video"].to(self.device)   # one bucket
        recon = model.decode(model.encode(video)[0]).clamp(-1, 1)
        pair = np.concatenate([tile(to_uint8(video)), tile(to_uint8(recon))], axis=1)   # (T, 2H, 4W, 3)
        folder = run.path / "reconstructions"
        folder.mkdir(parents=True, exist_ok=True)
        save_video(upscale(pair, 2), folder / f"step_{step:08d}.gif", overwrite=True)
