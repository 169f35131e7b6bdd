import pytest
import torch

from vidiff.diffusion import add_noise, cosine_log_snr, loss_weight, to_x0_eps, training_target
from vidiff.diffusion.schedules import alpha_sigma


def test_forward_process_has_the_advertised_marginal():
    g = torch.Generator().manual_seed(0)
    mu, s = 0.7, 0.4
    x0 = mu + s * torch.randn(200_000, generator=g, dtype=torch.float64)
    for t in (0.1, 0.5, 0.9):
        log_snr = cosine_log_snr(torch.full((1,), t, dtype=torch.float64))
        alpha, sigma = alpha_sigma(log_snr)
        x_t = add_noise(x0[None], torch.randn(1, 200_000, generator=g, dtype=torch.float64), log_snr)
        assert x_t.mean().item() == pytest.approx((alpha * mu).item(), abs=5e-3)
        assert x_t.var().item() == pytest.approx((alpha ** 2 * s ** 2 + sigma ** 2).item(), rel=1e-2)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_targets_convert_back_to_x0_and_eps(prediction):
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(4, 3, 2, 5, 5, generator=g, dtype=torch.float64), torch.randn(4, 3, 2, 5, 5, generator=g, dtype=torch.float64)
    log_snr = torch.tensor([-8.0, -1.0, 2.0, 9.0], dtype=torch.float64)
    x_t = add_noise(x0, noise, log_snr)
    x0_hat, eps_hat = to_x0_eps(prediction, training_target(prediction, x0, noise, log_snr), x_t, log_snr)
    torch.testing.assert_close(x0_hat, x0)
    torch.testing.assert_close(eps_hat, noise)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_min_snr_weight_equals_clamped_snr_on_the_x0_error(prediction):
    """weight * |output error|^2 == min(SNR, 5) * |implied x0 error|^2 for every prediction type."""
    log_snr = torch.tensor([-4.0, 0.0, 1.0, 3.0, 6.0], dtype=torch.float64)
    x_t = torch.randn(5, 8, dtype=torch.float64)
    delta = torch.randn(5, 8, dtype=torch.float64)
    out = torch.randn(5, 8, dtype=torch.float64)
    x0_a, _ = to_x0_eps(prediction, out, x_t, log_snr)
    x0_b, _ = to_x0_eps(prediction, out + delta, x_t, log_snr)
    lhs = loss_weight(prediction, log_snr, "min_snr") * delta.pow(2).sum(1)
    rhs = log_snr.exp().clamp(max=5.0) * (x0_b - x0_a).pow(2).sum(1)
    torch.testing.assert_close(lhs, rhs)
    assert torch.all(loss_weight(prediction, log_snr, "none") == 1)


def test_unknown_prediction_is_rejected():
    with pytest.raises(ValueError, match="eps, x0, v"):
        training_target("score", torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1))
