"""Diffusion math: schedules, objectives, samplers and guidance as pure functions over tensors."""
from .guidance import classifier_free_guidance
from .objectives import (add_noise, diffusion_loss, loss_weight, make_denoiser, model_input, to_x0_eps,
                         training_target, training_times)
from .samplers import SAMPLERS, ddim, ddpm, dpm_solver_2m, euler, flow_euler, get_sampler, heun, time_grid
from .schedules import SCHEDULES, alpha_sigma, cosine_log_snr, get_schedule, linear_log_snr, rectified_log_snr

__all__ = [
    "classifier_free_guidance", "add_noise", "diffusion_loss", "loss_weight", "make_denoiser", "model_input",
    "to_x0_eps", "training_target", "training_times", "SAMPLERS", "ddim", "ddpm", "dpm_solver_2m", "euler",
    "flow_euler", "heun", "get_sampler", "time_grid", "SCHEDULES", "alpha_sigma", "cosine_log_snr", "get_schedule",
    "linear_log_snr", "rectified_log_snr",
]
