import math

import pytest
import torch

from vidiff.diffusion import SCHEDULES, alpha_sigma, cosine_log_snr, linear_log_snr
from vidiff.diffusion.schedules import LOG_SNR_MAX, LOG_SNR_MIN, SCHEDULES

T = torch.linspace(0, 1, 1001, dtype=torch.float64)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedules_are_strictly_decreasing_from_clean_to_noise(name):
    log_snr = SCHEDULES[name](T[1:])  # linear is clamped at exactly t = 0
    assert torch.all(log_snr[1:] < log_snr[:-1])
    assert SCHEDULES[name](T[:1]).item() == pytest.approx(LOG_SNR_MAX)
    assert log_snr[-1] < -10


def test_cosine_endpoints_and_formula():
    assert cosine_log_snr(T[:1]).item() == pytest.approx(LOG_SNR_MAX, abs=1e-9)
    assert cosine_log_snr(T[-1:]).item() == pytest.approx(LOG_SNR_MIN, abs=1e-9)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    alpha, _ = alpha_sigma(cosine_log_snr(t, -60.0, 60.0))   # near-unclipped endpoints
    torch.testing.assert_close(alpha, torch.cos(math.pi * t / 2), atol=1e-9, rtol=0)


def test_linear_matches_discrete_ddpm_betas():
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)   # Ho et al. 2020
    alpha_bar = torch.cumprod(1 - betas, 0)
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    alpha, _ = alpha_sigma(linear_log_snr(t))
    # continuous vs discrete differ by O(beta^2) per step; 1% on log(alpha_bar) over the whole range
    torch.testing.assert_close(torch.log(alpha ** 2), torch.log(alpha_bar), rtol=0.01, atol=1e-3)


def test_alpha_sigma_is_variance_preserving():
    alpha, sigma = alpha_sigma(torch.linspace(-20, 20, 101, dtype=torch.float64))
    torch.testing.assert_close(alpha ** 2 + sigma ** 2, torch.ones(101, dtype=torch.float64))



def test_a_shifted_schedule_is_the_same_schedule_noisier_by_two_log_shift():
    import math
    from vidiff.diffusion import schedule_of
    assert schedule_of("cosine") is SCHEDULES["cosine"]
    t = torch.linspace(0.05, 0.95, 7, dtype=torch.float64)
    torch.testing.assert_close(schedule_of("cosine", 3.0)(t), SCHEDULES["cosine"](t) - 2 * math.log(3.0))
