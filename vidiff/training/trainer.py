"""The one training loop, for every objective: a task (diffusion.py, vae.py) builds the network and
computes the loss of a batch; the Trainer runs the steps around it: gradient accumulation, precision,
DDP/FSDP, clipping, AdamW, EMA, non-finite-step skipping, a time limit, checkpoints, samples, plots.

Every random draw of step k comes from a generator seeded by (seed, k), and clip i of the data is a
pure function of (data seed, i); together with saved model, optimizer and EMA state this makes
--resume continue exactly where an uninterrupted run would be.

Written for a GPU: a step makes no host sync. Losses stay tensors on the device, a non-finite step is
skipped by the fused AdamW kernel itself (its found_inf input, as GradScaler uses it) and by the EMA,
and the host reads the numbers once per train.log_every steps, where it also checks the bad-step count.
"""
from __future__ import annotations

import math
import pickle
from contextlib import nullcontext
from pathlib import Path
from time import perf_counter

import torch
from torch import Tensor
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_optimizer_state_dict)
from tqdm.auto import tqdm

from ..checkpoint import initialize_from, load_weights, read_config, resolve_checkpoint
from ..config import Config
from ..data import collate
from ..distributed import barrier, current
from ..distributed import mean as dist_mean
from ..distributed import mean_tensor
from ..devices import allow_tf32, compile_module
from ..errors import VidiffError
from ..models.sequence_parallel import check_split, sequence_group, split_backbone
from .diffusion import DiffusionTask
from .ema import EMA
from .freeze import freeze_except
from .lr import learning_rate, warmup_steps
from .optim import fused_adamw, keep_fused, skip_unless
from .options import autocast_for, validate_training
from .parallel import wrap
from .run_folder import RunFolder, damaged
from .task import Task

MAX_BAD_STEPS = 10         # non-finite losses tolerated (skipped) before the run stops
STEP_SEED_STRIDE = 1_000_003   # step k's generator is seeded seed * stride + k: a prime keeps (seed, k) pairs apart


def step_generator(seed: int, index: int) -> torch.Generator:
    """The random source of micro-batch `index` (noise, times, caption dropout, VAE posterior draws)."""
    return torch.Generator().manual_seed(seed * STEP_SEED_STRIDE + index)


class MicroBatches(torch.utils.data.Dataset):
    """Micro-batch k of this process as one item, so a DataLoader's workers build whole batches;
    files skipped while building it travel with it (worker processes keep their own counts)."""

    def __init__(self, dataset, batch_size: int, part: slice, offset: int = 0):
        self.dataset, self.batch_size, self.part, self.offset = dataset, batch_size, part, offset

    def __getitem__(self, k: int) -> dict:
        log = getattr(self.dataset, "skipped", [])
        before = len(log)
        positions = range(self.part.start, self.part.stop)
        batch = collate([self.dataset.item(k + self.offset, j, self.batch_size) for j in positions])
        return {**batch, "index": k, "indices": [(k + self.offset) * self.batch_size + j for j in positions],
                "skipped": list(log[before:])}


def check_resumable(cfg: Config, folder: Path, sections: tuple[str, ...]) -> None:
    saved = read_config(folder)
    for section in sections:
        if getattr(saved, section) != getattr(cfg, section):
            raise VidiffError(f"config section '{section}' differs from the checkpoint in '{folder}'; "
                              "resume with the run's own config.json")
    for key in ("lora", "trainable", "expert"):   # what trains; the rest of train (steps, lr, ...) may change
        if getattr(saved.train, key) != getattr(cfg.train, key):
            raise VidiffError(f"train.{key} differs from the checkpoint in '{folder}'; resume with the run's own "
                              "config.json (a different adapter or set of trained weights is a new run)")


class Trainer:
    def __init__(self, cfg: Config, run_dir: str | Path, resume: bool = False, progress: bool = True,
                 task: type[Task] = DiffusionTask):
        """task(cfg, device, resume_folder) builds the objective: DiffusionTask (`vidiff train`) or
        VAETask (`vidiff train-vae`)."""
        self.cfg = validate_training(cfg)
        if cfg.train.lora.rank and not task.lora:
            raise VidiffError(f"train.lora adapts text-to-video models (vidiff train, tune, distill); a {task.model_type} "
                              "run trains the whole network: remove train.lora from the config")
        self.dist = current()             # the caller holds the process group (distributed.process_group)
        self.progress = progress and self.dist.main
        self.device = self.dist.device
        # sequence parallelism: every process takes the whole batch, and each clip's frames are split instead
        self.sequence = self.dist.enabled and cfg.train.parallel == "sequence"
        self.part = slice(0, cfg.train.batch_size) if self.sequence else self.dist.part(cfg.train.batch_size)
        self.fsdp = self.dist.enabled and cfg.train.parallel == "fsdp"
        self.run = RunFolder(run_dir, self.dist.main)
        folder = self.run.start(resume)
        if folder is not None:
            check_resumable(cfg, folder, task.sections)
            done = int(folder.name.split("_")[-1]) if folder.name.startswith("step_") else -1
            if done >= cfg.train.steps:        # said before minutes of loading, not after
                raise VidiffError(f"the run in '{self.run.path}' already finished its {cfg.train.steps} steps; nothing "
                                  "to do (pass --steps N to extend it)")
        torch.manual_seed(cfg.train.seed)
        self.task = task(cfg, self.device, folder)
        self.task.progress = self.progress
        self.model = self.task.model
        # parameters train.init_from's checkpoint did not have
        self.added = self._initialize_from(cfg.train.init_from) if folder is None and cfg.train.init_from else []
        image_model = self._image_model(fresh=folder is None)
        # train.lora: the task's model carries adapters; on the frozen model nothing else trains
        self.trainable = freeze_except(self.model, "*.lora.*" if cfg.train.lora.rank else cfg.train.trainable,
                                       "temporal" if image_model else None)
        self.trainable_set = set(self.trainable)
        self.ema = EMA(self.model, cfg.train.ema_decay, share_frozen=not self.fsdp)
        self.skipped = list(getattr(self.task.dataset, "skipped", []))   # files the data check rejected
        self._batches = None
        self.step, self.history, self.seconds = 0, [], 0.0
        self._bad_steps = torch.zeros((), dtype=torch.int64, device=self.device)   # read on the host once per log
        if folder is not None:
            self._restore(folder)
        self._prepare_for_device()
        if folder is not None:
            self._resume_optimizers(folder)
        self.run.save_config(cfg)
        if self.dist.main and folder is None and cfg.train.warmup_steps >= cfg.train.steps:
            tqdm.write(f"note: train.warmup_steps {cfg.train.warmup_steps} is as long as the run ({cfg.train.steps} steps), "
                       f"which would never reach train.lr; it warms up over {warmup_steps(cfg.train)} steps instead")

    def _initialize_from(self, source: str) -> list[str]:
        """train.init_from: another model's weights (new parameters keep their init); from an image
        model (data.frames 1) into a video, the temporal layers start as identity (inflation)."""
        added = initialize_from(self.model, source, self.task.model_type)
        note = f"initialised from '{source}'; {len(added)} new parameter tensors keep their init"
        backbone = self.task.backbone()
        if backbone is not None and self.cfg.data.frames > 1 and read_config(resolve_checkpoint(source)).data.frames == 1:
            if not backbone.has_temporal_layers():
                raise VidiffError(f"cannot inflate '{source}' into a video model: its {type(backbone).__name__} has no "
                                  "separate temporal layers (model.dit.attention: factorized has them)")
            backbone.reset_temporal()
            note += "; an image model: its temporal layers start as identity"
        if self.dist.main:
            tqdm.write(note)
        return added

    def _image_model(self, fresh: bool) -> bool:
        """Is this an image model (1-frame clips) with temporal layers? They stay at their identity init
        (reset now for a fresh run) and frozen: on one frame they would learn per-frame work that a video
        would then mix across frames (inflation must be exact)."""
        backbone = self.task.backbone()
        if self.cfg.data.frames != 1 or backbone is None or not backbone.has_temporal_layers():
            return False
        if fresh:
            backbone.reset_temporal()
        return True

    def _restore(self, folder: Path) -> None:
        """Weights, average and counters of the checkpoint a resumed run continues."""
        partial = self.task.frozen_base
        load_weights(self.model, folder / "model.safetensors", self.task.model_type, allow_new=partial)
        load_weights(self.ema.model, folder / "ema.safetensors", self.task.model_type, allow_new=partial)
        state = RunFolder.state(folder)
        self.step, self.bad_steps, self.history = state["step"], state.get("bad_steps", 0), state["history"]
        self.seconds = state.get("seconds", 0.0)

    def _prepare_for_device(self) -> None:
        """TF32, train.compile, DDP/FSDP wrapping, the optimizer. After loading full weights: FSDP replaces
        parameters, so the optimizer comes after it."""
        tc = self.cfg.train
        allow_tf32()
        if tc.compile:          # in place: parameter names, and so checkpoints, stay those of the plain model
            backbone = self.task.backbone()
            compile_module(backbone if backbone is not None else self.model)
        if self.sequence:
            self._split_sequences()
        self.net = wrap(self.model, tc.parallel, self.dist)
        if self.fsdp:
            wrap(self.ema.model, "fsdp", self.dist)          # the average is sharded like the weights
        self.optimizer = fused_adamw([p for p in self.model.parameters() if p.requires_grad], tc.lr,
                                     weight_decay=tc.weight_decay)

    def _split_sequences(self) -> None:
        """train.parallel: sequence: the DiT's clips split by frames across the processes (the EMA copy,
        which samples on one process, keeps whole clips). Clips the processes cannot split: one-line error."""
        backbone = self.task.backbone()
        d, m = self.cfg.data, self.cfg.model
        pt, ph, pw = m.dit.patch
        group = sequence_group()
        # every clip shape training will see: folder data's buckets (each its own frames and aspect) too
        buckets = getattr(self.task.dataset, "buckets", lambda: {})()
        for clip in [(d.frames, d.size, d.size), *sorted(buckets)]:
            _, frames, height, width = self.task.codec.shape(m.in_channels, *clip)
            check_split(group, frames // pt, (height // ph) * (width // pw), m.dit.width // m.dit.head_dim,
                        m.dit.attention == "factorized")
        split_backbone(backbone, group)

    def _resume_optimizers(self, folder: Path) -> None:
        try:
            saved = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
            raise damaged(folder, "optimizer.pt", e) from None
        extras = {}
        if "state" not in saved:              # {"model": ..., "discriminator": ...} (older VAE runs: "vae")
            extras = saved
            saved = saved.get("model", saved.get("vae"))
        if all(isinstance(k, int) for k in saved.get("state", {})):    # written by optimizer.state_dict()
            self.optimizer.load_state_dict(saved)
        else:                                                             # full state dict keyed by name
            set_optimizer_state_dict(self.model, self.optimizer, saved, options=StateDictOptions(full_state_dict=True))
        keep_fused(self.optimizer)
        self.task.resume(folder, extras)

    @property
    def bad_steps(self) -> int:
        """Steps skipped for a non-finite loss so far (a host sync: read it at log time)."""
        return int(self._bad_steps)

    @bad_steps.setter
    def bad_steps(self, value: int) -> None:
        self._bad_steps.fill_(value)

    def batch(self, micro_index: int) -> dict:
        """This process's part of global micro-batch `micro_index`, from the DataLoader while one runs."""
        batch = next(self._batches, None) if self._batches is not None else None
        if batch is None or batch["index"] != micro_index:
            batch = MicroBatches(self.task.dataset, self.cfg.train.batch_size, self.part,
                                    self.cfg.train.data_offset)[micro_index]
        self.skipped += batch["skipped"]
        return batch

    def start_loader(self) -> None:
        """Decode the coming micro-batches in `data.workers` processes, in order, from the current step."""
        tc, workers = self.cfg.train, self.cfg.data.workers
        indices = range(self.step * tc.grad_accum, tc.steps * tc.grad_accum)
        loader = torch.utils.data.DataLoader(MicroBatches(self.task.dataset, tc.batch_size, self.part, tc.data_offset), batch_size=None,
                                             sampler=indices, num_workers=workers,
                                             prefetch_factor=2 if workers else None,
                                             pin_memory=self.device.type == "cuda")   # for non-blocking copies
        self._batches = iter(loader)

    def train_step(self) -> dict[str, Tensor]:
        """One optimizer step (with gradient accumulation); returns the mean loss and the task's parts as
        tensors on the device, unread: the host does not wait for the step to finish."""
        tc = self.cfg.train
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(tc, self.step)
        total, parts = torch.zeros((), device=self.device), {}
        autocast = autocast_for(tc.precision, self.device)
        for micro in range(tc.grad_accum):
            index = self.step * tc.grad_accum + micro
            batch = self.batch(index)
            # DDP: average gradients once per optimizer step, not once per micro-batch
            sync = micro == tc.grad_accum - 1 or not hasattr(self.net, "no_sync")
            with nullcontext() if sync else self.net.no_sync():
                loss, part_values = self.task.loss(self.net, batch, step_generator(tc.seed, index), self.part, autocast)
                (loss / tc.grad_accum).backward()
            total = total + loss.detach().float() / tc.grad_accum
            for k, v in part_values.items():
                parts[k] = parts.get(k, 0.0) + v / tc.grad_accum
        total = mean_tensor(total, self.dist)                  # every rank decides the same about a bad step
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm     # FSDP: the norm over every shard
        # a finite loss can still have inf/NaN gradients (an overflow in backward): skip those steps too
        finite = torch.isfinite(total) & torch.isfinite(norm)
        self._bad_steps += ~finite
        skip_unless(self.optimizer, finite)
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model, self.step, keep=finite)
        parts.update(self.task.after_step(self.step))
        self.step += 1
        return {"loss": total, **parts}

    def read(self, values: dict) -> dict[str, float]:
        """The step's values as numbers: the one host sync of a logging interval. Stops a run that
        keeps making non-finite losses."""
        names = list(values)
        numbers = torch.stack([torch.as_tensor(values[k], dtype=torch.float64, device=self.device).reshape(())
                               for k in names] + [self._bad_steps.double()]).tolist()
        if numbers[-1] > MAX_BAD_STEPS:
            raise VidiffError(f"{int(numbers[-1])} steps had a non-finite loss; lower train.lr or check the data")
        return dict(zip(names, numbers[:-1]))

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
        state = {"step": self.step, "bad_steps": self.bad_steps, "history": self.history, "seconds": self.seconds}
        model, ema, optimizer = self.full_states()
        if self.task.frozen_base:          # the frozen rest is the pretrained model's, not this run's
            model, ema = ({k: v for k, v in d.items() if k in self.trainable_set} for d in (model, ema))
        extra_optimizers = self.task.extra_optimizers()
        if extra_optimizers:
            optimizer = {"model": optimizer, **extra_optimizers}
        folder = self.run.checkpoints / f"step_{self.step:08d}"
        if self.dist.main:
            folder = self.run.save(self.step, self.cfg, self.cfg.train.keep_last, model=model, ema=ema,
                                   optimizer=optimizer, state=state, model_type=self.task.model_type,
                                   extra=self.task.extra_weights() or None, extra_metadata=self.task.extra_metadata())
            if self.cfg.train.lora.rank:     # the adapter alone, kilobytes: `vidiff generate --lora`
                self.task.save_adapter(self.unsharded(self.ema.model, ema), folder)
            self.run.plot(self.history)
        barrier(self.dist)
        return folder

    def unsharded(self, model: torch.nn.Module, full_state: dict) -> torch.nn.Module:
        """`model` as one plain module on rank 0: under FSDP a fresh copy holding `full_state` (its
        gathered weights), since reading a sharded module's tensors on one rank is a collective the
        other ranks never join."""
        if not self.fsdp:
            return model
        fresh = self.task.new_model().to(self.device).eval()
        # a frozen base comes from its directory with new_model(); full_state holds what trained
        fresh.load_state_dict(full_state, strict=not self.task.frozen_base)
        return fresh

    def write_samples(self) -> None:
        """The task's sample pictures from the EMA weights, on rank 0 (a sharded EMA is gathered first)."""
        state = get_model_state_dict(self.ema.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)) \
            if self.fsdp else {}
        if self.dist.main:
            self.task.write_samples(self.unsharded(self.ema.model, state), self.run, self.step)

    def time_up(self, limit: float, log: bool) -> bool:
        """Has the run used train.time_limit_minutes? One process checks after every step; under torchrun
        the ranks agree at each log step (a collective is a host sync)."""
        if limit == math.inf or (self.dist.enabled and not log):
            return False
        return dist_mean(float(self.seconds >= limit), self.dist) > 0

    def train(self) -> dict:
        """Run to train.steps, or until train.time_limit_minutes of training time (summed over resumes)
        have passed; the last step is always checkpointed. Checkpointing and sampling time is not counted."""
        tc = self.cfg.train
        if self.step >= tc.steps:
            raise VidiffError(f"the run in '{self.run.path}' already finished its {tc.steps} steps; nothing to do "
                              "(pass --steps N to extend it)")
        limit = tc.time_limit_minutes * 60 if tc.time_limit_minutes > 0 else math.inf
        if self.seconds >= limit:
            raise VidiffError(f"the run in '{self.run.path}' has used {self.seconds / 60:.1f} minutes of training, and "
                              f"--minutes / train.time_limit_minutes ({tc.time_limit_minutes:g}) is the limit of the run's "
                              "total; pass a larger --minutes to continue it")
        bar = tqdm(total=tc.steps, initial=self.step, disable=not self.progress, desc="train", unit="step")
        self.start_loader()
        start, start_step, before = perf_counter(), self.step, self.seconds
        while self.step < tc.steps:
            tick = perf_counter()
            values = self.train_step()
            log = self.step % tc.log_every == 0
            if log:
                parts = self.read(values)          # waits for the GPU: the clock below then counts its work
            self.seconds += perf_counter() - tick
            last = self.step == tc.steps or self.time_up(limit, log)
            bar.update(1)
            if log or last:
                parts = parts if log else self.read(values)
                rate = (self.step - start_step) / max(self.seconds - before, 1e-9)
                lr = learning_rate(tc, self.step - 1)
                self.history.append({"step": self.step, **parts, "lr": lr, "steps_per_s": rate, "seconds": self.seconds})
                bar.set_postfix(loss=f"{parts['loss']:.4f}", lr=f"{lr:.1e}")
            if self.step % tc.checkpoint_every == 0 or last:
                self.save()
            if tc.sample_every and (self.step % tc.sample_every == 0 or last):
                self.write_samples()
            if last:
                break
        bar.close()
        self._batches = None
        return {"steps": self.step, "seconds": perf_counter() - start, "train_seconds": self.seconds,
                "bad_steps": self.bad_steps, "skipped_files": len(self.skipped),
                "final_loss": self.history[-1]["loss"] if self.history else None}
