"""Diffusion math: schedules, objectives, samplers and guidance as pure functions over tensors.
Each registry (SCHEDULES, SPACINGS, PREDICTIONS, WEIGHTINGS, TIME_SAMPLINGS, SAMPLERS) is the one list
of the names a config or a caller may use."""
from .conditioning import MASK_KINDS, frame_mask, reconstruction_guidance, replacement
from .guidance import classifier_free_guidance, compositional_guidance
from .objectives import (PREDICTIONS, TIME_SAMPLINGS, WEIGHTINGS, add_noise, diffusion_loss, loss_weight, make_denoiser,
                         model_input, to_x0_eps, training_target, training_times)
from .samplers import SAMPLERS, ddim, ddpm, dpm_solver_2m, euler, flow_euler, heun
from .schedules import (SCHEDULES, SPACINGS, alpha_sigma, schedule_of, cosine_log_snr, karras_grid, linear_log_snr, log_snr_grid,
                        rectified_log_snr, sampling_grid, uniform_time_grid)

__all__ = [
    "MASK_KINDS", "frame_mask", "reconstruction_guidance", "replacement", "classifier_free_guidance", "compositional_guidance", "PREDICTIONS", "TIME_SAMPLINGS", "WEIGHTINGS", "add_noise", "diffusion_loss",
    "loss_weight", "make_denoiser", "model_input", "to_x0_eps", "training_target", "training_times", "SAMPLERS",
    "ddim", "ddpm", "dpm_solver_2m", "euler", "flow_euler", "heun", "SCHEDULES", "SPACINGS", "alpha_sigma", "schedule_of",
    "cosine_log_snr", "karras_grid", "linear_log_snr", "log_snr_grid", "rectified_log_snr", "sampling_grid",
    "uniform_time_grid",
]
