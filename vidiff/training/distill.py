"""`vidiff distill`: progressive distillation (vidiff/diffusion/distillation.py) of a trained model
into a student that samples in diffusion.distilled_steps DDIM steps with one network pass each.

train.steps is split evenly over the halving rounds (e.g. 32 -> 16 -> 8 -> 4: three rounds). The
student starts as a copy of the teacher (train.init_from); after each round the student becomes the
next round's teacher. Round one's teacher runs with classifier-free guidance (train.distill.guidance);
the student never does, so the guided model is distilled into single passes. A frame-conditioned
model is distilled on the same frame masks it was trained with, scored on the unknown frames.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from ..checkpoint import load_model, load_weights
from ..models.lora import add_recipe_lora
from ..config import Config
from ..diffusion import schedule_of, classifier_free_guidance, make_denoiser, sampling_grid
from ..diffusion.distillation import distillation_loss, round_at, rounds
from ..errors import VidiffError
from ..pipeline import SampleOptions
from .diffusion import DiffusionTask, frame_inputs

TEACHER = "teacher"


class DistillTask(DiffusionTask):
    def __init__(self, cfg: Config, device: torch.device, resume: Path | None = None):
        d = cfg.train.distill
        if not d.teacher:
            raise VidiffError("train.distill.teacher is empty: name the model to distil (vidiff distill --model)")
        try:
            self.rounds = rounds(d.teacher_steps, cfg.diffusion.distilled_steps)
        except ValueError as e:
            raise VidiffError(f"cannot distil: {e}") from None
        super().__init__(cfg, device, resume)
        teacher, teacher_cfg, _ = load_model(d.teacher)
        if teacher_cfg.diffusion.distilled_steps:
            raise VidiffError(f"'{d.teacher}' is already a distilled student; distil its teacher instead")
        add_recipe_lora(teacher, cfg.train.lora)   # train.lora: the student's adapters (zero: no change), so they pass on
        self.teacher = teacher.to(device).eval().requires_grad_(False)
        self.round = 0
        self.per_round = max(1, cfg.train.steps // len(self.rounds))

    def _teacher_denoiser(self, ids: Tensor, frames: Tensor | None):
        context = self.teacher.encode(ids)
        cond = (*context, frames) if frames is not None else context
        if self.round == 0 and self.cfg.train.distill.guidance != 1.0:
            null = self.teacher.encode(self.teacher.tokenizer.empty(ids.shape[0]).to(ids.device))
            null = (*null, frames) if frames is not None else null
            fn = classifier_free_guidance(self.teacher, cond, null, self.cfg.train.distill.guidance)
        else:
            fn = lambda x, log_snr: self.teacher(x, log_snr, *cond)
        return make_denoiser(fn, self.cfg.diffusion.prediction)

    def loss(self, net, batch, generator, part, autocast) -> tuple[Tensor, dict]:
        cfg = self.cfg
        x0 = self.to_model_space(batch)
        ids = self.model.tokenizer.encode(batch["caption"]).to(self.device)
        frames, where = frame_inputs(cfg, x0, cfg.train.batch_size, generator, part)
        student = make_denoiser(lambda x, log_snr: net(x, log_snr, frames=frames, ids=ids), cfg.diffusion.prediction)
        grid = sampling_grid(schedule_of(cfg.diffusion.schedule, cfg.diffusion.shift), self.rounds[self.round], "uniform")
        with autocast:
            loss = distillation_loss(student, self._teacher_denoiser(ids, frames), x0, grid, generator, where,
                                     part, cfg.train.batch_size)
        return loss, {"teacher_steps": float(self.rounds[self.round])}

    def after_step(self, step: int) -> dict:
        """At the end of a round the student becomes the teacher (its raw weights: the EMA still
        remembers the previous round). `step` is the 0-based step just taken."""
        now = round_at(step + 1, self.per_round, len(self.rounds))
        if now != self.round:
            self.round = now
            # full tensors on every rank (a collective under FSDP, whose own state dict holds this rank's shards)
            self.teacher.load_state_dict(get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True)))
        return {}

    def extra_weights(self) -> dict:
        return {**super().extra_weights(), TEACHER: self.teacher}

    def resume(self, folder: Path, optimizers: dict) -> None:
        from .run_folder import RunFolder
        self.round = round_at(RunFolder.state(folder)["step"], self.per_round, len(self.rounds))
        load_weights(self.teacher, folder / f"{TEACHER}.safetensors", TEACHER)

    def sample_options(self) -> SampleOptions:
        """The student of this round: half its teacher's DDIM steps, no guidance (it has its teacher's built in)."""
        return SampleOptions(self.rounds[self.round] // 2, 1.0, "ddim", "uniform", progress=False)


def distill_config(teacher: str, steps: int, teacher_steps: int = 32, guidance: float | None = None,
                   train_steps: int = 1200) -> Config:
    """The student's recipe: the teacher's config, initialised from its weights, with its VAE; a
    constant learning rate and a short EMA, so the average does not mix the rounds' students."""
    from ..checkpoint import read_config, resolve_checkpoint
    folder = resolve_checkpoint(teacher)
    cfg = read_config(folder)
    cfg.diffusion.distilled_steps = steps
    if guidance is None:
        guidance = cfg.diffusion.guidance
    t = cfg.train
    t.distill.teacher, t.distill.teacher_steps, t.distill.guidance = str(teacher), teacher_steps, guidance
    t.init_from, t.vae = str(teacher), str(teacher) if (folder / "vae.safetensors").is_file() else ""
    t.steps, t.lr, t.lr_decay, t.warmup_steps, t.ema_decay = train_steps, 1e-4, "constant", 20, 0.99
    t.time_limit_minutes = 0.0
    try:
        n_rounds = len(rounds(teacher_steps, steps))
    except ValueError as e:
        raise VidiffError(f"cannot distil: {e}") from None
    t.sample_every = t.checkpoint_every = max(1, train_steps // n_rounds)
    t.sample_guidance = 1.0
    return cfg
