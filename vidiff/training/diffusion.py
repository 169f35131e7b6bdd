"""The diffusion objective as a training task: data -> (VAE latents) -> noise at a random log-SNR ->
model -> weighted loss. Sample sheets from fixed held-out prompts as it goes."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from time import perf_counter

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..checkpoint import load_codec, load_vae, resolve_checkpoint, vae_metadata
from ..config import Config
from ..data import build_dataset, collate
from ..data.worlds import world_of
from ..data.splits import HELD_OUT, LATENT_SCALE
from ..diffusion import schedule_of, add_noise, diffusion_loss, model_input, training_times
from ..devices import sample_randn, to_device
from ..diffusion.conditioning import draw_masks, frame_condition
from ..errors import VidiffError
from ..models import LatentCodec, TextToVideoModel, build_model, input_multiples
from ..models.bundle import Bundle
from ..models.codec import measure_latent_scale
from ..models.own import own_bundle
from ..models.vae import latent_frames
from ..pipeline import SampleOptions, sample_video
from ..registry import check_input_size
from .objective import Objective, own_objective
from .plots import save_samples
from .run_folder import RunFolder
from .task import Task


def frame_inputs(cfg: Config, x0: Tensor, b: int, generator: torch.Generator,
                 part: slice) -> tuple[Tensor | None, Tensor | None]:
    """For a frame-conditioned model: (frame condition, unknown-frame mask for the loss) of a batch, the
    known frames drawn by train.frame_masks and lightly noised (per-sample draws on x0's device);
    (None, None) for any other model."""
    if not cfg.model.frame_conditioning:
        return None, None
    masks = cfg.train.frame_masks
    known = to_device(draw_masks(asdict(masks), x0.shape[2], b, generator)[part], x0.device)
    std = to_device((torch.rand(b, generator=generator) * masks.noise)[part].view(-1, 1, 1, 1, 1), x0.device)
    jitter = sample_randn(x0.shape[1:], generator, range(b)[part], x0.device, stream=1)
    return frame_condition(x0 + std * jitter, known), (~known)[:, None, :, None, None]


def training_loss(model: nn.Module, cfg: Config, x0: Tensor, cond: Tensor, null: Tensor,
                  generator: torch.Generator, part: slice | None = None, autocast=None,
                  weights: Tensor | None = None, objective: Objective | None = None) -> Tensor:
    """One diffusion training loss on a batch; all randomness from `generator` (a CPU generator).

    The small draws (times, caption dropout, frame masks) come from it on the CPU, for the whole global
    batch; the full-size noise on x0's device, per sample (devices.sample_randn: seeded by the step's
    seed and the sample's index in the global batch), so a GPU step does not wait for noise made and
    copied by the host, and a process draws only its own samples. With `part`, x0 and cond are this
    process's slice of a global batch of train.batch_size; N processes see exactly the noise one
    process would. Dropped captions (classifier-free guidance) become `null`, the empty prompt (token
    ids for vidiff's own models, text states for an open model).
    A frame-conditioned model (model.frame_conditioning) is also shown, per sample, some frames of
    x0 (train.frame_masks: which frames, and a light noise on them), and scored on the others.
    weights: (B, 1, T, H, W) per-pixel loss weights at the clips' pixel size (train.overlap_weight),
    max-pooled to x0's size (a latent pixel holding an overlap pixel gets its weight).
    objective: prediction, schedule, shift, time range and how the network is called: an open model's
    bundle gives it; None is vidiff's own model under the config's diffusion section (own_objective)."""
    b = x0.shape[0] if part is None else cfg.train.batch_size
    part = part or slice(None)
    device = x0.device
    objective = objective or own_objective(cfg)
    prediction, (low, high) = objective.prediction, objective.times
    t = low + (high - low) * training_times(b, generator, cfg.diffusion.time_sampling)[part]
    noise = sample_randn(x0.shape[1:], generator, range(b)[part], device)
    drop = (torch.rand(b, generator=generator) < cfg.train.cfg_dropout)[part]
    cond = torch.where(drop.view(-1, *[1] * (cond.dim() - 1)).to(cond.device), null.to(cond.device), cond)
    log_snr = to_device(schedule_of(objective.schedule, objective.shift)(t), device)
    x_t = add_noise(x0, noise, log_snr)
    frames, where = frame_inputs(cfg, x0, b, generator, part)
    if weights is not None:
        weights = F.adaptive_max_pool3d(to_device(weights, device, x0.dtype), x0.shape[2:])
        where = weights if where is None else weights * where
    x_in = model_input(prediction, x_t, log_snr)
    with autocast if autocast is not None else nullcontext():
        output = objective.call(model, x_in, log_snr, to_device(cond, device), frames)
    return diffusion_loss(output, x0, noise, log_snr, prediction, cfg.diffusion.loss_weighting, where).mean()


class DiffusionTask(Task):
    sections = ("model", "diffusion", "data")
    lora = True
    progress = False              # a bar over the sample sheets' steps (the Trainer sets it)

    def __init__(self, cfg: Config, device: torch.device, resume: Path | None = None):
        self.cfg, self.device = cfg, device
        self.open = None
        if cfg.model.pretrained:     # a diffusers-format model (loads diffusers only when asked)
            from .open_model import OpenModel
            self.open = OpenModel(cfg, device)
            self.model_type, self.model, self.dataset = self.open.family, self.open.model, self.open.dataset
            self.codec, self.frozen_base = LatentCodec(), True    # clips come encoded; the base stays in its directory
            return
        self.model_type = cfg.model.type
        self.dataset = build_dataset(cfg.data, cfg.model.text.vocab)
        self.codec, self.latent_cache = self._codec(resume), {}
        if cfg.data.type == "folder":
            self._bucket_folder()
        self.model = self.new_model().to(device)

    def _bucket_folder(self) -> None:
        """Folder clips keep their aspect ratio (data/buckets.py): sides a multiple of what the VAE and the
        backbone need, and frame counts each checked as data.frames is."""
        frames_multiple, size_multiple = input_multiples(self.cfg.model)
        vae = self.codec.vae
        factor, time_factor = (vae.spatial_factor, vae.time_factor) if vae is not None else (1, 1)
        self.dataset.fit(factor * size_multiple, time_factor, frames_multiple)

    def new_model(self) -> nn.Module:
        if self.open is not None:
            return self.open.new_model()
        # train.lora: with empty adapters, the only parameters that will train
        return build_model(self.cfg.model, self.cfg.trained_words(), self.cfg.train.lora)

    def backbone(self) -> nn.Module | None:
        return None if self.open is not None else self.model.backbone

    def _codec(self, resume: Path | None) -> LatentCodec:
        """For train.vae: the frozen VAE and the latent scale, measured once when the run starts (a
        resumed run reads both from its checkpoint's vae.safetensors)."""
        cfg = self.cfg
        if resume is not None:
            return load_codec(resume, self.device)
        if not cfg.train.vae:
            return LatentCodec()
        if (resolve_checkpoint(cfg.train.vae) / "vae.safetensors").is_file():
            # a latent diffusion model's VAE and latent scale: continuing it (train.init_from) needs both
            codec = load_codec(resolve_checkpoint(cfg.train.vae), self.device)
            vae, vae_cfg = codec.vae, Config(vae=codec.config)
        else:
            vae, vae_cfg = load_vae(cfg.train.vae, self.device)
            codec = None
        if cfg.model.in_channels != vae.latent_channels:
            raise VidiffError(f"model.in_channels is {cfg.model.in_channels} but the VAE in '{cfg.train.vae}' makes "
                              f"{vae.latent_channels}-channel latents; set model.in_channels: {vae.latent_channels}")
        if cfg.model.frame_conditioning and vae.time_factor > 1:
            raise VidiffError(f"model.frame_conditioning needs a VAE without temporal compression, and the one in "
                              f"'{cfg.train.vae}' packs {vae.time_factor} frames into a latent frame (known and "
                              "unknown frames would mix); use vae.temporal_downsample: 1")
        d, tf = cfg.data, vae.time_factor
        if latent_frames(d.frames, tf) is None or d.size % vae.spatial_factor:
            raise VidiffError(f"data.frames must be 1 + {tf}k and data.size a multiple of {vae.spatial_factor} "
                              f"for the VAE in '{cfg.train.vae}'")
        _, frames, size, _ = vae.latent_shape(d.frames, d.size, d.size)
        check_input_size(cfg, frames, size, " (after the VAE)")
        if codec is not None:
            return codec
        sample = collate([self.dataset.item(LATENT_SCALE, j, 8) for j in range(8)])["video"].to(self.device)
        return LatentCodec(vae.requires_grad_(False), measure_latent_scale(vae, sample), config=vae_cfg.vae)

    def to_model_space(self, batch: dict) -> Tensor:
        """Pixels, or their latents; cached when each clip recurs unchanged (a finite synthetic set,
        or a folder with data.folder.fixed_clips), so every clip goes through the VAE encoder once."""
        if "latents" in batch:          # an open model's clips, encoded once into the disk cache
            return torch.stack(batch["latents"]).to(self.device, non_blocking=True)
        video = batch["video"].to(self.device, non_blocking=True)
        if not self.codec.latent:
            return video
        keys = self.dataset.cache_keys(batch)
        if keys and all(k in self.latent_cache for k in keys):
            return torch.stack([self.latent_cache[k] for k in keys])
        z = self.codec.encode(video)
        for k, latent in zip(keys, z):      # kept on the device: a latent clip is a few KiB, a copy back a sync
            self.latent_cache[k] = latent
        return z

    def loss(self, net, batch, generator, part, autocast) -> tuple[Tensor, dict]:
        if self.open is not None:
            context = torch.stack(batch["context"]).to(self.device, non_blocking=True)
            return training_loss(net, self.cfg, self.to_model_space(batch), context, self.open.null, generator, part,
                                 autocast, objective=self.open.objective), {}
        tokenizer = self.model.tokenizer
        ids = tokenizer.encode(batch["caption"])
        stride = torch.tensor(batch["stride"]) if "stride" in batch else 1
        loss = training_loss(net, self.cfg, self.to_model_space(batch), ids, tokenizer.empty(1), generator, part, autocast,
                             self.overlap_weights(batch), own_objective(self.cfg, stride))
        return loss, {}

    def save_adapter(self, model: nn.Module, folder: Path) -> None:
        if self.open is None:
            return super().save_adapter(model, folder)
        self.open.save_adapter(model, folder)

    def overlap_weights(self, batch: dict) -> Tensor | None:
        """1 + train.overlap_weight where objects overlap, if the data's world can tell (data/worlds.py), else None."""
        return world_of(self.cfg.data).overlap_weights(batch, self.cfg.train.overlap_weight)

    def extra_weights(self) -> dict:
        return {"vae": self.codec.vae} if self.codec.latent else {}

    def extra_metadata(self) -> dict:
        return {"vae": vae_metadata(self.codec.config, self.codec.scale)} if self.codec.latent else {}

    def sample_options(self) -> SampleOptions:
        """The sample sheets sample as the model will: its own sampler, spacing, steps and guidance
        (train.sample_steps and sample_guidance may override the last two, e.g. for a quick sheet)."""
        t = self.cfg.train
        o = SampleOptions(t.sample_steps or None, None if t.sample_guidance < 0 else t.sample_guidance,
                          progress=False).resolved(self.bundle(self.model))
        # a run of a few steps pays for no more sheet than training: at most its own step count (at least 2)
        return o if t.sample_steps else replace(o, steps=min(o.steps, max(2, t.steps)))

    def bundle(self, model: TextToVideoModel) -> Bundle:
        """The model being trained, as the pipeline runs it (its sample sheets)."""
        return own_bundle(model, self.cfg, self.codec, "the run's model", world_of(self.cfg.data))

    def write_samples(self, model: nn.Module, run: RunFolder, step: int) -> None:
        if self.open is not None:
            return self.open.write_samples(model, run, step, self.progress)
        tc, dc = self.cfg.train, self.cfg.data
        captions = [self.dataset[HELD_OUT + i]["caption"] for i in range(4)]
        bundle = self.bundle(model)
        shape = bundle.codec.shape(dc.frames, dc.size, dc.size)
        options = replace(self.sample_options(), progress=self.progress)   # a bar: a sheet can take minutes
        cond = bundle.encode(captions, 1)
        null = bundle.encode([""] * len(captions), 1) if options.guidance != 1.0 else cond
        start = perf_counter()
        x = sample_video(bundle, cond, null, shape, options, torch.Generator().manual_seed(tc.seed))
        path = save_samples(self.codec.decode(x), captions, run.path / "samples", step)
        if self.progress:      # what a sheet costs, so a user can size train.sample_every and sample_steps
            tqdm.write(f"sample sheet {path}: {len(captions)} videos, {options.steps} steps, "
                       f"{perf_counter() - start:.1f} s")
