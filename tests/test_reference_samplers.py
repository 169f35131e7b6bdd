"""Our DDIM and DPM-Solver++(2M) updates against diffusers' schedulers, fed the same noise levels
(diffusers' timesteps as our log-SNR grid) and the same model outputs (diffusers is a test-only dependency)."""
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from vidiff.diffusion import ddim, dpm_solver_2m, make_denoiser  # noqa: E402


def replay(outputs):
    """A 'model' that returns the k-th prepared eps on its k-th call, whatever its input."""
    calls = iter(outputs)
    return lambda x, log_snr: next(calls).to(x.dtype)


def run_diffusers(scheduler, x, outputs):
    for t, eps in zip(scheduler.timesteps, outputs):
        x = scheduler.step(eps, t, x).prev_sample
    return x


@pytest.mark.parametrize("steps", [10, 25])
def test_ddim_matches_diffusers_ddim_scheduler(steps):
    sched = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", set_alpha_to_one=True,
                                    clip_sample=False, prediction_type="epsilon", timestep_spacing="leading")
    sched.set_timesteps(steps)
    a = sched.alphas_cumprod[sched.timesteps].double()
    log_snrs = torch.cat([torch.log(a / (1 - a)), torch.tensor([20.0], dtype=torch.float64)])
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    outputs = [torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(steps)]
    ours = ddim(make_denoiser(replay(outputs), "eps"), x_T, log_snrs)
    theirs = run_diffusers(sched, x_T.float(), [o.float() for o in outputs])
    torch.testing.assert_close(ours.float(), theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("steps", [10, 25])
def test_dpm_solver_2m_matches_diffusers_multistep_scheduler(steps):
    sched = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="linear",
                                                  algorithm_type="dpmsolver++", solver_order=2,
                                                  solver_type="midpoint", final_sigmas_type="zero",
                                                  prediction_type="epsilon")
    sched.set_timesteps(steps)
    ve_sigmas = sched.sigmas[:-1].double()                   # sigma / alpha at each step; the last is 0
    log_snrs = torch.cat([-2 * torch.log(ve_sigmas), torch.tensor([20.0], dtype=torch.float64)])
    g = torch.Generator().manual_seed(1)
    x_T = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    outputs = [torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(steps)]
    ours = dpm_solver_2m(make_denoiser(replay(outputs), "eps"), x_T, log_snrs)
    theirs = run_diffusers(sched, x_T.float(), [o.float() for o in outputs])   # VP scale, as ours
    torch.testing.assert_close(ours.float(), theirs, rtol=1e-4, atol=1e-4)
