"""Samplers on Gaussian data, where the exact denoiser E[x0 | x_t] is known in closed form."""
import pytest
import torch

from vidiff.diffusion import (SAMPLERS, SCHEDULES, SPACINGS, ddim, ddpm, dpm_solver_2m, euler, flow_euler, heun,
                              make_denoiser, sampling_grid)
from vidiff.diffusion.schedules import alpha_sigma

MU = torch.tensor([1.0, -0.5, 0.3], dtype=torch.float64)
STD = torch.tensor([0.5, 1.0, 0.2], dtype=torch.float64)


def exact_denoiser(x_t, log_snr):
    """x0 ~ N(MU, STD^2): E[x0 | x_t] = MU + alpha STD^2 / (alpha^2 STD^2 + sigma^2) (x_t - alpha MU)."""
    alpha, sigma = alpha_sigma(log_snr[:, None])
    x0 = MU + alpha * STD ** 2 / (alpha ** 2 * STD ** 2 + sigma ** 2) * (x_t - alpha * MU)
    return x0, (x_t - alpha * x0) / sigma


# Stochastic samplers converge more slowly in steps than the deterministic one (the ancestral step
# ignores the uncertainty of x0 given x_t), hence their larger step counts below.
def grid(steps, schedule="cosine", spacing="uniform"):
    return sampling_grid(SCHEDULES[schedule], steps, spacing)


def run(sampler, steps, schedule="cosine", n=40_000, spacing="uniform", **kwargs):
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return sampler(exact_denoiser, x_T, grid(steps, schedule, spacing), generator=g, **kwargs)


@pytest.mark.parametrize("schedule", ["cosine", "linear", "rectified"])
@pytest.mark.parametrize("sampler,kwargs,steps", [
    (ddim, {"eta": 0.0}, 400), (ddim, {"eta": 1.0}, 1000), (ddim, {"eta": 0.5}, 1000), (ddpm, {}, 1000),
    (dpm_solver_2m, {}, 100), (heun, {}, 100), (euler, {}, 400), (flow_euler, {}, 400)])
def test_sampler_reproduces_gaussian_mean_and_std(sampler, kwargs, steps, schedule):
    x = run(sampler, steps, schedule, **kwargs)
    torch.testing.assert_close(x.mean(0), MU, atol=0.02, rtol=0)
    torch.testing.assert_close(x.std(0), STD, atol=0, rtol=0.03)


def test_deterministic_ddim_error_shrinks_with_steps():
    """First-order convergence: doubling the steps about halves the error in the spread."""
    errors = [(run(ddim, steps).std(0) - STD).abs().max().item() for steps in (50, 100, 200)]
    assert errors[1] < 0.6 * errors[0] and errors[2] < 0.6 * errors[1]


def test_euler_on_the_scaled_ode_is_deterministic_ddim():
    """DDIM (eta 0) is exactly Euler's method in (sigma / alpha, x / alpha) coordinates (Karras et al. 2022)."""
    torch.testing.assert_close(run(euler, 30, n=2000), run(ddim, 30, n=2000, eta=0.0))


@pytest.mark.parametrize("solver", [dpm_solver_2m, heun])
def test_second_order_solvers_are_more_accurate_than_ddim(solver):
    error = lambda x: ((x.std(0) - STD) / STD).abs().max().item()
    assert error(run(solver, 50)) < 0.25 * error(run(ddim, 50))


def test_ddim_with_eta_one_is_ddpm():
    """DDIM's eta = 1 variance is DDPM's posterior variance, and the means coincide too."""
    a = run(ddim, 20, n=1000, eta=1.0)
    b = run(ddpm, 20, n=1000)
    torch.testing.assert_close(a, b)


def test_deterministic_ddim_maps_noise_to_data_monotonically():
    """The probability-flow map is the affine x -> MU + STD * x for Gaussian data."""
    x_T = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None].repeat(1, 3)
    x = ddim(exact_denoiser, x_T, grid(400))
    torch.testing.assert_close(x, MU + STD * x_T, atol=0.01, rtol=0)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampler_contract_shape_dtype_seed(name):
    sampler = SAMPLERS[name]
    x_T = torch.randn(2, 3, 4, 4, 4)
    denoise = lambda x, s: (torch.zeros_like(x), x / alpha_sigma(s)[1].view(-1, 1, 1, 1, 1))
    calls = []
    out = [sampler(denoise, x_T, grid(5), generator=torch.Generator().manual_seed(3),
                   callback=lambda i, x0: calls.append(i)) for _ in range(2)]
    assert out[0].shape == x_T.shape and out[0].dtype == x_T.dtype
    torch.testing.assert_close(out[0], out[1], atol=0, rtol=0)
    assert calls == [0, 1, 2, 3, 4] * 2                      # the callback sees every step, the last included


@pytest.mark.parametrize("name", ["ddpm", "ddim"])
def test_stochastic_samplers_keep_the_states_dtype_and_are_reproducible_by_seed(name):
    """The state keeps x_T's dtype (float64 only in the scalar coefficients) and the noise is drawn in
    it, where the state lives: a seed gives the same samples."""
    denoise = lambda x, s: (torch.zeros_like(x), torch.zeros_like(x))
    kwargs = {"eta": 1.0} if name == "ddim" else {}
    for dtype in (torch.float32, torch.bfloat16):
        x_T = torch.randn(2, 3, generator=torch.Generator().manual_seed(1)).to(dtype)
        a, b = (SAMPLERS[name](denoise, x_T, grid(3), generator=torch.Generator().manual_seed(0), **kwargs)
                for _ in range(2))
        assert a.dtype == dtype and torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a GPU draws with its own generator")
def test_two_device_generators_from_one_seed_draw_different_noise():
    from vidiff.devices import generator_on
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(4, generator=generator_on(g, "cuda"), device="cuda") for _ in range(2))
    assert not torch.equal(a, b)


@pytest.mark.parametrize("spacing", list(SPACINGS))
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_sampling_grids_run_from_noise_to_the_clean_end(spacing, schedule):
    g = grid(10, schedule, spacing)
    assert g.dtype == torch.float64 and len(g) == 11 and (g.diff() > 0).all()
    assert g[-1] == pytest.approx(SCHEDULES[schedule](torch.tensor([0.0], dtype=torch.float64)).item())
    assert g[0] <= -8.7                                      # sigma / alpha >= 80 (EDM's sigma_max) or more


@pytest.mark.parametrize("spacing", ["karras", "log_snr"])
@pytest.mark.parametrize("sampler,steps", [(ddim, 400), (dpm_solver_2m, 100), (heun, 100)])
def test_samplers_reproduce_the_gaussian_on_every_grid(sampler, steps, spacing):
    x = run(sampler, steps, spacing=spacing)
    torch.testing.assert_close(x.mean(0), MU, atol=0.02, rtol=0)
    torch.testing.assert_close(x.std(0), STD, atol=0, rtol=0.03)


def test_flow_euler_is_deterministic_ddim():
    """Euler in rectified-flow coordinates and DDIM take the same path (both are exact for a constant x0)."""
    torch.testing.assert_close(run(flow_euler, 30, "rectified", n=2000), run(ddim, 30, "rectified", n=2000))


def exact_flow_model(z, log_snr):
    """A perfect flow-matching network: velocity eps - x0 from the rectified-flow state z."""
    alpha, sigma = alpha_sigma(log_snr[:, None])
    x0, eps = exact_denoiser(z * (alpha + sigma), log_snr)
    return eps - x0


@pytest.mark.parametrize("sampler,steps", [(flow_euler, 400), (dpm_solver_2m, 100), (heun, 100)])
def test_flow_model_runs_in_every_sampler(sampler, steps):
    """A flow-matching model plugged in through make_denoiser('flow') samples the right distribution."""
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(40_000, 3, generator=g, dtype=torch.float64)
    x = sampler(make_denoiser(exact_flow_model, "flow"), x_T, grid(steps, "rectified"), generator=g)
    torch.testing.assert_close(x.mean(0), MU, atol=0.02, rtol=0)
    torch.testing.assert_close(x.std(0), STD, atol=0, rtol=0.03)
