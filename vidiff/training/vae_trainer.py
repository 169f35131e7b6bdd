"""Training the video VAE: L1 + squared error + L1 on spatial and temporal finite differences + a small KL.

The squared error matters on sparse frames: with L1 alone a small VAE trained on small objects over a
black background settled on the background (the median) and stayed there; squared error keeps
paying for every missed object pixel.

The gradient term stands in for a perceptual loss, which would need downloaded network weights:
it penalises blurred edges and frame-to-frame jitter directly. An adversarial term (vae.adversarial_weight,
off by default) adds a 3D PatchGAN with hinge losses; its weight is rescaled every step so that its
gradient at the decoder's last layer matches the reconstruction gradient there (VQGAN's balance).
Checkpoints, resume and plots work as in the diffusion trainer (same atomic folders, `latest`).
"""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import Config
from ..data import build_dataset, collate
from ..data.io import save_video, tile, to_uint8, upscale
from ..errors import VidiffError
from ..models.discriminator import PatchDiscriminator3D, discriminator_hinge_loss, generator_adversarial_loss
from ..models.vae import VideoVAE
from .checkpoint import load_weights, read_config, resolve_checkpoint, write_checkpoint, write_pointer
from .plots import save_loss_plot
from .trainer import learning_rate

VAE_TYPE = "vae"


def build_vae(cfg: Config) -> VideoVAE:
    v = cfg.vae
    return VideoVAE(v.in_channels, v.channels, tuple(v.channel_mults), v.latent_channels, v.temporal_downsample)


def load_vae(path: str | Path, device: str | torch.device = "cpu") -> tuple[VideoVAE, Config]:
    """A trained VAE from a `vidiff train-vae` run or checkpoint folder."""
    folder = resolve_checkpoint(path)
    cfg = read_config(folder)
    vae = build_vae(cfg)
    load_weights(vae, folder / "model.safetensors", cfg, model_type=VAE_TYPE)
    return vae.to(device).eval(), cfg


def finite_differences(x: torch.Tensor) -> list[torch.Tensor]:
    """Differences along time, height and width of (B, C, T, H, W)."""
    return [x.diff(dim=d) for d in (2, 3, 4) if x.shape[d] > 1]


def vae_loss(cfg: Config, recon: torch.Tensor, target: torch.Tensor, mean: torch.Tensor,
             logvar: torch.Tensor) -> tuple[torch.Tensor, dict]:
    l1 = (recon - target).abs().mean()
    mse = (recon - target).pow(2).mean()
    grad = sum((a - b).abs().mean() for a, b in zip(finite_differences(recon), finite_differences(target)))
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
    loss = l1 + cfg.vae.mse_weight * mse + cfg.vae.gradient_weight * grad + cfg.vae.kl_weight * kl
    return loss, {"l1": l1.item(), "mse": mse.item(), "grad": float(grad.detach()), "kl": kl.item()}


def adaptive_weight(reconstruction: torch.Tensor, adversarial: torch.Tensor, last_layer: torch.Tensor) -> float:
    """The adversarial weight that gives its gradient at `last_layer` the reconstruction gradient's norm."""
    rec = torch.autograd.grad(reconstruction, last_layer, retain_graph=True)[0].norm()
    adv = torch.autograd.grad(adversarial, last_layer, retain_graph=True)[0].norm()
    return (rec / (adv + 1e-4)).clamp(0, 1e4).item()


def validate_vae_config(cfg: Config) -> None:
    v, d = cfg.vae, cfg.data
    if v.adversarial_weight < 0 or v.adversarial_start < 0 or v.discriminator_channels < 2:
        raise VidiffError("vae needs adversarial_weight >= 0, adversarial_start >= 0 and discriminator_channels >= 2")
    if len(v.channel_mults) < 3 and v.temporal_downsample == 4:
        raise VidiffError("vae.temporal_downsample 4 needs at least 3 vae.channel_mults levels")
    if (d.frames - 1) % v.temporal_downsample:
        raise VidiffError(f"data.frames {d.frames} must be 1 + {v.temporal_downsample}k for vae.temporal_downsample "
                          f"{v.temporal_downsample} (e.g. {1 + v.temporal_downsample * 4})")
    if d.size % 2 ** (len(v.channel_mults) - 1):
        raise VidiffError(f"data.size {d.size} must be divisible by {2 ** (len(v.channel_mults) - 1)}")


class VAETrainer:
    def __init__(self, cfg: Config, run_dir: str | Path, resume: bool = False, progress: bool = True):
        validate_vae_config(cfg)
        self.cfg, self.run_dir, self.progress = cfg, Path(run_dir), progress
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(cfg.train.seed)
        self.vae = build_vae(cfg).to(self.device)
        self.optimizer = torch.optim.AdamW(self.vae.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.disc = self.disc_optimizer = None
        if cfg.vae.adversarial_weight > 0:
            self.disc = PatchDiscriminator3D(cfg.vae.in_channels, cfg.vae.discriminator_channels).to(self.device)
            self.disc_optimizer = torch.optim.AdamW(self.disc.parameters(), lr=cfg.train.lr, betas=(0.5, 0.9),
                                                    weight_decay=cfg.train.weight_decay)
        self.dataset = build_dataset(cfg.data, captions=False)
        self.step, self.history = 0, []
        self.checkpoints = self.run_dir / "checkpoints"
        if resume:
            if not (self.run_dir / "latest").is_file():
                raise VidiffError(f"nothing to resume in '{self.run_dir}' (no 'latest' checkpoint); drop --resume")
            folder = resolve_checkpoint(self.run_dir)
            load_weights(self.vae, folder / "model.safetensors", read_config(folder), model_type=VAE_TYPE)
            optimizers = torch.load(folder / "optimizer.pt", map_location=self.device, weights_only=True)
            if self.disc is not None:
                if not (folder / "discriminator.safetensors").is_file():
                    raise VidiffError(f"checkpoint '{folder}' has no discriminator; resume with the run's own config.json")
                load_weights(self.disc, folder / "discriminator.safetensors", cfg, model_type="discriminator")
                self.disc_optimizer.load_state_dict(optimizers["discriminator"])
            self.optimizer.load_state_dict(optimizers.get("vae", optimizers))
            state = json.loads((folder / "state.json").read_text())
            self.step, self.history = state["step"], state["history"]
        elif self.checkpoints.exists() and any(self.checkpoints.iterdir()):
            raise VidiffError(f"run folder '{self.run_dir}' already has checkpoints; pass --resume to "
                              "continue it or choose another --out")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(self.run_dir / "config.json")

    def batch(self, step: int) -> torch.Tensor:
        b = self.cfg.train.batch_size
        return collate([self.dataset.item(step, j, b) for j in range(b)])["video"].to(self.device)

    def train_step(self) -> dict:
        tc = self.cfg.train
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(tc, self.step)
        video = self.batch(self.step)
        generator = torch.Generator().manual_seed(tc.seed * 1_000_003 + self.step)
        recon, mean, logvar = self.vae(video, generator)
        loss, parts = vae_loss(self.cfg, recon, video, mean, logvar)
        adversarial = self.disc is not None and self.step >= self.cfg.vae.adversarial_start
        if adversarial:
            fake = generator_adversarial_loss(self.disc(recon))
            weight = self.cfg.vae.adversarial_weight * adaptive_weight(loss, fake, self.vae.decoder[-1].weight)
            loss = loss + weight * fake
            parts.update(adversarial=fake.item(), adversarial_weight=weight)
        self.optimizer.zero_grad(set_to_none=True)
        if math.isfinite(loss.item()):
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.vae.parameters(), tc.grad_clip)
            self.optimizer.step()
        if adversarial:
            self.disc_optimizer.zero_grad(set_to_none=True)
            d_loss = discriminator_hinge_loss(self.disc(video), self.disc(recon.detach()))
            if math.isfinite(d_loss.item()):
                d_loss.backward()
                torch.nn.utils.clip_grad_norm_(self.disc.parameters(), tc.grad_clip)
                self.disc_optimizer.step()
            parts["discriminator"] = d_loss.item()
        self.step += 1
        return {"loss": loss.item(), **parts}

    def save(self) -> None:
        name = f"step_{self.step:08d}"
        state = {"step": self.step, "history": self.history}
        if not (self.checkpoints / name).exists():
            optimizer, extra = self.optimizer, None
            if self.disc is not None:
                optimizer = {"vae": self.optimizer.state_dict(), "discriminator": self.disc_optimizer.state_dict()}
                extra = {"discriminator": self.disc}
            write_checkpoint(self.checkpoints / name, self.cfg, self.vae, None, optimizer, state,
                             model_type=VAE_TYPE, extra=extra)
        write_pointer(self.run_dir, name)
        for old in sorted(p for p in self.checkpoints.iterdir() if p.name.startswith("step_"))[: -self.cfg.train.keep_last]:
            shutil.rmtree(old)

    @torch.no_grad()
    def write_reconstructions(self) -> None:
        """Held-out clips (top) over their reconstructions (bottom), as a GIF and a PNG sheet."""
        self.vae.eval()
        video = collate([self.dataset[10**9 + i] for i in range(4)])["video"].to(self.device)
        recon = self.vae.decode(self.vae.encode(video)[0]).clamp(-1, 1)
        self.vae.train()
        pair = np.concatenate([tile(to_uint8(video)), tile(to_uint8(recon))], axis=1)   # (T, 2H, 4W, 3)
        folder = self.run_dir / "reconstructions"
        folder.mkdir(exist_ok=True)
        save_video(upscale(pair, 2), folder / f"step_{self.step:08d}.gif", overwrite=True)

    def train(self) -> dict:
        tc = self.cfg.train
        bar = tqdm(total=tc.steps, initial=self.step, disable=not self.progress, desc="train-vae", unit="step")
        start, start_step = time.perf_counter(), self.step
        while self.step < tc.steps:
            parts = self.train_step()
            bar.update(1)
            if self.step % tc.log_every == 0 or self.step == tc.steps:
                rate = (self.step - start_step) / (time.perf_counter() - start)
                self.history.append({"step": self.step, **parts, "steps_per_s": rate})
                bar.set_postfix(loss=f"{parts['loss']:.4f}", l1=f"{parts['l1']:.4f}")
            if self.step % tc.checkpoint_every == 0 or self.step == tc.steps:
                self.save()
                save_loss_plot(self.history, self.run_dir / "loss.png")
            if self.step % tc.sample_every == 0 or self.step == tc.steps:
                self.write_reconstructions()
        bar.close()
        return {"steps": self.step, "seconds": time.perf_counter() - start,
                "final_loss": self.history[-1]["loss"] if self.history else None}
