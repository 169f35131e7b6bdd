"""The training loop: data -> noise at random log-SNR -> model -> weighted loss -> AdamW, EMA, checkpoints.

Every random draw of step k comes from a generator seeded by (seed, k), and clip i of the data is a
pure function of (data seed, i); together with saved model, optimizer and EMA state this makes
--resume continue exactly where an uninterrupted run would be.
"""
from __future__ import annotations

import json
import math
import shutil
from contextlib import nullcontext
from pathlib import Path
from time import perf_counter

import torch
from tqdm.auto import tqdm

from ..config import Config, validate
from ..latents import LatentCodec, measure_latent_scale
from ..data import build_dataset, collate
from ..diffusion import add_noise, diffusion_loss, get_schedule, model_input, training_times
from ..errors import VidiffError
from ..models import TextToVideoModel
from ..sampling import sample_video
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_optimizer_state_dict)

from .checkpoint import load_weights, read_config, resolve_checkpoint, write_checkpoint, write_pointer
from .distributed import barrier, init_distributed, wrap
from .distributed import mean as dist_mean
from .ema import EMA
from .plots import save_loss_plot, save_samples

MAX_BAD_STEPS = 10  # non-finite losses tolerated (skipped) before the run stops



def autocast_for(precision: str, device: torch.device):
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()


def learning_rate(cfg, step: int) -> float:
    """Linear warm-up, then constant or cosine decay to 10% of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_decay == "constant":
        return cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))


def training_loss(model: TextToVideoModel, cfg: Config, video: torch.Tensor, ids: torch.Tensor,
                  generator: torch.Generator, part: slice | None = None) -> torch.Tensor:
    """One diffusion training loss on a batch; all randomness from `generator` (drawn on the CPU).

    With `part`, video and ids are this process's slice of a global batch of train.batch_size: the
    draws are made for the whole global batch and sliced, so N processes see exactly the noise one
    process would."""
    b = video.shape[0] if part is None else cfg.train.batch_size
    part = part or slice(None)
    t = training_times(b, generator, cfg.diffusion.time_sampling)[part]
    noise = torch.randn((b, *video.shape[1:]), generator=generator)[part]
    drop = (torch.rand(b, generator=generator) < cfg.train.cfg_dropout)[part]
    ids = ids.clone()
    ids[drop, 1:] = 0                                      # the empty prompt: <bos> alone
    device = video.device
    log_snr = get_schedule(cfg.diffusion.schedule)(t).to(device)
    noise = noise.to(device)
    x_t = add_noise(video, noise, log_snr)
    with autocast_for(cfg.train.precision, device):
        output = model(model_input(cfg.diffusion.prediction, x_t, log_snr), log_snr, ids=ids.to(device))
    return diffusion_loss(output, video, noise, log_snr, cfg.diffusion.prediction,
                          cfg.diffusion.loss_weighting).mean()


class MicroBatches(torch.utils.data.Dataset):
    """Micro-batch k of this process as one item, so a DataLoader's workers build whole batches;
    files skipped while building it travel with it (worker processes keep their own counts)."""

    def __init__(self, dataset, batch_size: int, part: slice):
        self.dataset, self.batch_size, self.part = dataset, batch_size, part

    def __getitem__(self, k: int) -> dict:
        log = getattr(self.dataset, "skipped", [])
        before = len(log)
        positions = range(self.part.start, self.part.stop)
        batch = collate([self.dataset.item(k, j, self.batch_size) for j in positions])
        return {**batch, "index": k, "indices": [k * self.batch_size + j for j in positions],
                "skipped": list(log[before:])}


class Trainer:
    def __init__(self, cfg: Config, run_dir: str | Path, resume: bool = False, progress: bool = True):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.dist = init_distributed()
        self.progress = progress and self.dist.main
        self.device = self.dist.device
        self.part = self.dist.part(cfg.train.batch_size)
        self.fsdp = self.dist.enabled and cfg.train.parallel == "fsdp"
        self.dataset = build_dataset(cfg.data, cfg.model.text.vocab)
        self.codec, self.latent_cache = self._latent_codec(resume), {}
        torch.manual_seed(cfg.train.seed)
        self.model = TextToVideoModel(cfg.model).to(self.device)
        self.ema = EMA(self.model, cfg.train.ema_decay)
        self.skipped = list(getattr(self.dataset, "skipped", []))   # files the data check rejected
        self._batches = None
        self.step, self.bad_steps, self.history, self.seconds = 0, 0, [], 0.0
        self.checkpoints = self.run_dir / "checkpoints"
        folder = None
        if resume:
            folder = self._resume_weights()
        elif self.checkpoints.exists() and any(self.checkpoints.iterdir()):
            raise VidiffError(f"run folder '{self.run_dir}' already has checkpoints; pass --resume to "
                              "continue it or choose another --out")
        # wrap after loading full weights; FSDP replaces parameters, so the optimizer comes after it
        self.net = wrap(self.model, cfg.train.parallel, self.dist)
        if self.fsdp:
            wrap(self.ema.model, "fsdp", self.dist)          # the average is sharded like the weights
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.train.lr,
                                           weight_decay=cfg.train.weight_decay)
        if folder is not None:
            self._resume_optimizer(folder)
        if self.dist.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(self.run_dir / "config.json")

    def _latent_codec(self, resume: bool) -> LatentCodec:
        """For train.vae: adopt the VAE's architecture into this config, switch the model to its latent
        channels and measure the latent scale (once; a resumed run reads all this from its checkpoint)."""
        cfg = self.cfg
        if resume and (self.run_dir / "latest").is_file():
            folder = resolve_checkpoint(self.run_dir)
            saved = read_config(folder)
            cfg.vae, cfg.diffusion.space, cfg.model.in_channels = saved.vae, saved.diffusion.space, saved.model.in_channels
            return LatentCodec.from_checkpoint(saved, folder, self.device)
        if not cfg.train.vae:
            return LatentCodec()
        from .vae_trainer import load_vae      # (vae_trainer imports this module)
        vae, vae_cfg = load_vae(cfg.train.vae, self.device)
        cfg.vae = vae_cfg.vae
        cfg.diffusion.space, cfg.model.in_channels = "latent", vae_cfg.vae.latent_channels
        validate(cfg)
        sample = collate([self.dataset.item(10**8, j, 8) for j in range(8)])["video"].to(self.device)
        cfg.vae.latent_scale = measure_latent_scale(vae, sample)
        return LatentCodec(vae.requires_grad_(False), cfg.vae.latent_scale)

    def to_model_space(self, batch: dict) -> torch.Tensor:
        """Pixels, or their latents; cached when each clip recurs unchanged (a finite synthetic set,
        or a folder with data.fixed_clips), so every clip goes through the VAE encoder once."""
        video = batch["video"].to(self.device)
        if self.codec.vae is None:
            return video
        data = self.cfg.data
        if data.type == "shapes":
            keys = [i % data.num_clips for i in batch["indices"]] if data.num_clips else []
        else:
            keys = list(batch["path"]) if data.fixed_clips else []
        if keys and all(k in self.latent_cache for k in keys):
            return torch.stack([self.latent_cache[k] for k in keys]).to(self.device)
        z = self.codec.encode(video)
        for k, latent in zip(keys, z):
            self.latent_cache[k] = latent.cpu()
        return z

    def _resume_weights(self) -> Path:
        if not (self.run_dir / "latest").is_file():
            raise VidiffError(f"nothing to resume in '{self.run_dir}' (no 'latest' checkpoint); drop --resume")
        folder = resolve_checkpoint(self.run_dir)
        saved = read_config(folder)
        for section in ("model", "diffusion", "data"):
            if getattr(saved, section) != getattr(self.cfg, section):
                raise VidiffError(f"config section '{section}' differs from the checkpoint in '{folder}'; "
                                  "resume with the run's own config.json")
        load_weights(self.model, folder / "model.safetensors", saved)
        load_weights(self.ema.model, folder / "ema.safetensors", saved)
        state = json.loads((folder / "state.json").read_text())
        self.step, self.bad_steps, self.history = state["step"], state["bad_steps"], state["history"]
        self.seconds = state.get("seconds", 0.0)
        return folder

    def _resume_optimizer(self, folder: Path) -> None:
        saved = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
        if all(isinstance(k, int) for k in saved.get("state", {})):   # written by optimizer.state_dict()
            self.optimizer.load_state_dict(saved)
        else:                                                            # full state dict keyed by name
            set_optimizer_state_dict(self.model, self.optimizer, saved, options=StateDictOptions(full_state_dict=True))

    def batch(self, micro_index: int) -> dict:
        """This process's part of global micro-batch `micro_index`, from the DataLoader while one runs."""
        batch = next(self._batches, None) if self._batches is not None else None
        if batch is None or batch["index"] != micro_index:
            batch = MicroBatches(self.dataset, self.cfg.train.batch_size, self.part)[micro_index]
        self.skipped += batch["skipped"]
        return batch

    def start_loader(self) -> None:
        """Decode the coming micro-batches in `data.workers` processes, in order, from the current step."""
        tc, workers = self.cfg.train, self.cfg.data.workers
        indices = range(self.step * tc.grad_accum, tc.steps * tc.grad_accum)
        loader = torch.utils.data.DataLoader(MicroBatches(self.dataset, tc.batch_size, self.part), batch_size=None,
                                             sampler=indices, num_workers=workers,
                                             prefetch_factor=2 if workers else None)
        self._batches = iter(loader)

    def train_step(self) -> float:
        """One optimizer step (with gradient accumulation); returns the mean loss."""
        tc = self.cfg.train
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(tc, self.step)
        total = 0.0
        for micro in range(tc.grad_accum):
            index = self.step * tc.grad_accum + micro
            batch = self.batch(index)
            generator = torch.Generator().manual_seed(tc.seed * 1_000_003 + index)
            ids = self.model.tokenizer.encode(batch["caption"])
            # DDP: average gradients once per optimizer step, not once per micro-batch
            sync = micro == tc.grad_accum - 1 or not hasattr(self.net, "no_sync")
            with nullcontext() if sync else self.net.no_sync():
                loss = training_loss(self.net, self.cfg, self.to_model_space(batch), ids, generator, self.part)
                (loss / tc.grad_accum).backward()
            total += loss.item() / tc.grad_accum
        total = dist_mean(total, self.dist)                    # every rank decides the same about a bad step
        if not math.isfinite(total):
            self.optimizer.zero_grad(set_to_none=True)
            self.bad_steps += 1
            if self.bad_steps > MAX_BAD_STEPS:
                raise VidiffError(f"{self.bad_steps} steps had a non-finite loss; lower train.lr or check the data")
        else:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.ema.update(self.model, self.step)
        self.step += 1
        return total

    def full_states(self) -> tuple[dict, dict, dict]:
        """Model, EMA and optimizer state gathered to full tensors (a collective under FSDP; ranks
        other than 0 get empty dicts). The optimizer state is keyed by parameter name, so it
        reloads under any world size or wrapping."""
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        if self.fsdp:
            model, ema = get_model_state_dict(self.model, options=options), get_model_state_dict(self.ema.model, options=options)
        else:
            model, ema = self.model.state_dict(), self.ema.model.state_dict()
        return model, ema, get_optimizer_state_dict(self.model, self.optimizer, options=options)

    def save(self) -> Path:
        name = f"step_{self.step:08d}"
        state = {"step": self.step, "bad_steps": self.bad_steps, "history": self.history, "seconds": self.seconds}
        model, ema, optimizer = self.full_states()
        if self.dist.main:
            if not (self.checkpoints / name).exists():
                extra = {"vae": self.codec.vae} if self.codec.vae is not None else None
                write_checkpoint(self.checkpoints / name, self.cfg, model, ema, optimizer, state, extra=extra)
            write_pointer(self.run_dir, name)
            kept = sorted(p for p in self.checkpoints.iterdir() if p.name.startswith("step_"))
            for old in kept[: -self.cfg.train.keep_last]:
                shutil.rmtree(old)
        barrier(self.dist)
        return self.checkpoints / name

    def write_samples(self) -> None:
        """Sample grids from the EMA weights, on rank 0 (a sharded EMA is gathered to it first)."""
        model = self.ema.model
        if self.fsdp:
            state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            if self.dist.main:
                model = TextToVideoModel(self.cfg.model).to(self.device).eval()
                model.load_state_dict(state)
        if not self.dist.main:
            return
        tc, dc = self.cfg.train, self.cfg.data
        captions = [self.dataset[10**9 + i]["caption"] for i in range(4)]   # far outside the training stream
        shape = self.codec.shape(self.cfg.model.in_channels, dc.frames, dc.size, dc.size)
        videos = self.codec.decode(sample_video(model, self.cfg.diffusion, model.tokenizer.encode(captions), shape,
                                                tc.sample_steps, tc.sample_guidance,
                                                generator=torch.Generator().manual_seed(tc.seed)))
        save_samples(videos, captions, self.run_dir / "samples", self.step)

    def train(self) -> dict:
        """Run to train.steps, or until train.time_limit_minutes of training time (summed over resumes)
        have passed; the last step is always checkpointed. Checkpointing and sampling time is not counted."""
        tc = self.cfg.train
        bar = tqdm(total=tc.steps, initial=self.step, disable=not self.progress, desc="train", unit="step")
        self.start_loader()
        start, start_step, before = perf_counter(), self.step, self.seconds
        limit = tc.time_limit_minutes * 60 if tc.time_limit_minutes > 0 else math.inf
        while self.step < tc.steps:
            tick = perf_counter()
            loss = self.train_step()
            self.seconds += perf_counter() - tick
            last = self.step == tc.steps or (limit < math.inf and dist_mean(float(self.seconds >= limit), self.dist) > 0)
            bar.update(1)
            if self.step % tc.log_every == 0 or last:
                rate = (self.step - start_step) / (self.seconds - before)
                self.history.append({"step": self.step, "loss": loss, "lr": learning_rate(tc, self.step - 1),
                                     "steps_per_s": rate, "seconds": self.seconds})
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{learning_rate(tc, self.step - 1):.1e}")
            if self.step % tc.checkpoint_every == 0 or last:
                self.save()
                if self.dist.main:
                    save_loss_plot(self.history, self.run_dir / "loss.png")
            if self.step % tc.sample_every == 0 or last:
                self.write_samples()
            if last:
                break
        bar.close()
        elapsed = perf_counter() - start
        self._batches = None
        return {"steps": self.step, "seconds": elapsed, "train_seconds": self.seconds, "bad_steps": self.bad_steps,
                "skipped_files": len(self.skipped), "final_loss": self.history[-1]["loss"] if self.history else None}
