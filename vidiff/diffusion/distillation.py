"""Progressive distillation (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of
Diffusion Models", Alg. 2; the method Imagen Video used to distil its cascade to 8 steps).

A student initialised from the teacher learns to make in ONE deterministic DDIM step what the teacher
makes in TWO: from z_t the teacher steps to t' and then t''; the student's x0 target is the x~ for
which a single DDIM step t -> t'' lands on the same z_t'' (their eq. 8):

    x~ = (z_t'' - (sigma_t'' / sigma_t) z_t) / (alpha_t'' - (sigma_t'' / sigma_t) alpha_t)

On the last step (t'' the clean end, where DDIM returns its x0 estimate) the target is the teacher's
x0 itself. Each round halves the step count; 32 -> 16 -> 8 -> 4 is three rounds. A guided teacher is
distilled with its guidance inside (Meng et al. 2023): the student then needs one pass per step.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..devices import sample_randn

from .objectives import Denoiser, masked_mse
from .schedules import alpha_sigma


def _expand(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def ddim_step(x0: Tensor, eps: Tensor, log_snr_s: Tensor) -> Tensor:
    alpha, sigma = alpha_sigma(_expand(log_snr_s, x0))
    return alpha * x0 + sigma * eps


@torch.no_grad()
def two_step_target(teacher: Denoiser, z_t: Tensor, log_snrs: Tensor, last: Tensor) -> Tensor:
    """The student's x0 target for one step over (t, t', t''): log_snrs (B, 3); last (B,) bool: t'' is
    the clean end of the grid, where DDIM returns x0 instead of stepping."""
    l_t, l_mid, l_end = log_snrs.unbind(1)
    x0, eps = teacher(z_t, l_t)
    z_mid = ddim_step(x0, eps, l_mid)
    x0_mid, eps_mid = teacher(z_mid, l_mid)
    z_end = ddim_step(x0_mid, eps_mid, l_end)
    a_t, s_t = alpha_sigma(_expand(l_t, z_t))
    a_end, s_end = alpha_sigma(_expand(l_end, z_t))
    ratio = s_end / s_t
    target = (z_end - ratio * z_t) / (a_end - ratio * a_t)
    return torch.where(_expand(last, z_t).bool(), x0_mid, target)


def student_grid_points(grid: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """For a teacher grid of 2N + 1 log-SNRs (noise to data) and student step indices (B,) in [0, N):
    the (B, 3) log-SNRs (t, t', t'') of each step and whether it is the student's last."""
    n = (len(grid) - 1) // 2
    i = 2 * index
    points = torch.stack([grid[i], grid[i + 1], grid[i + 2]], dim=1)
    return points, index == n - 1


def distillation_loss(student: Denoiser, teacher: Denoiser, x0: Tensor, grid: Tensor, generator: torch.Generator,
                      where: Tensor | None = None, part: slice | None = None, batch: int | None = None) -> Tensor:
    """Mean over the batch of the student's x0 error against the teacher's two-step target, at student
    steps drawn uniformly from the teacher's grid of 2N steps, weighted by max(SNR, 1) ("truncated
    SNR", as the paper). where: a 0/1 mask broadcastable to x0 (the unknown frames) or None.
    part, batch: x0 is this process's `part` of a global batch of `batch` clips: the small draws are made
    for the whole batch and sliced, the noise per sample, so N processes draw what one process would."""
    device, part = x0.device, part or slice(None)
    b = batch or x0.shape[0]
    index = torch.randint(0, (len(grid) - 1) // 2, (b,), generator=generator)[part]
    noise = sample_randn(x0.shape[1:], generator, range(b)[part], device, x0.dtype)
    points, last = student_grid_points(grid.to(torch.float64), index)
    points, last = points.to(device, x0.dtype), last.to(device)
    alpha, sigma = alpha_sigma(_expand(points[:, 0], x0))
    z_t = alpha * x0 + sigma * noise
    target = two_step_target(teacher, z_t, points, last)
    x0_student, _ = student(z_t, points[:, 0])
    per_sample = masked_mse(x0_student, target, where)
    weight = points[:, 0].exp().clamp_min(1.0).to(per_sample.dtype)
    return (per_sample * weight).mean()


def rounds(teacher_steps: int, student_steps: int) -> list[int]:
    """The teacher step counts of each halving round, e.g. 32 -> 4: [32, 16, 8]."""
    if student_steps < 1 or teacher_steps <= student_steps or teacher_steps % student_steps \
            or (teacher_steps // student_steps) & (teacher_steps // student_steps - 1):
        raise ValueError(f"the teacher's steps ({teacher_steps}) must be the student's ({student_steps}) "
                         "times a power of 2 (at least 2)")
    out, n = [], teacher_steps
    while n > student_steps:
        out.append(n)
        n //= 2
    return out


def round_at(completed_steps: int, steps_per_round: int, num_rounds: int) -> int:
    """The round a run is in after `completed_steps` optimizer steps: each round trains for
    steps_per_round steps (the last one takes any remainder). One formula for training and resume."""
    return min(completed_steps // steps_per_round, num_rounds - 1)
