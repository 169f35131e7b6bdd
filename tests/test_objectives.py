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


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "flow"])
def test_targets_convert_back_to_x0_and_eps(prediction):
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(4, 3, 2, 5, 5, generator=g, dtype=torch.float64), torch.randn(4, 3, 2, 5, 5, generator=g, dtype=torch.float64)
    log_snr = torch.tensor([-8.0, -1.0, 2.0, 9.0], dtype=torch.float64)
    x_t = add_noise(x0, noise, log_snr)
    x0_hat, eps_hat = to_x0_eps(prediction, training_target(prediction, x0, noise, log_snr), x_t, log_snr)
    torch.testing.assert_close(x0_hat, x0)
    torch.testing.assert_close(eps_hat, noise)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "flow"])
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
    with pytest.raises(ValueError, match="eps, x0, v, flow"):
        training_target("score", torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1))


def test_flow_state_is_the_straight_path_between_data_and_noise():
    """model_input turns the VP state into rectified flow's z = (1 - t) x0 + t eps at the schedule's t."""
    from vidiff.diffusion import model_input, rectified_log_snr
    g = torch.Generator().manual_seed(2)
    x0, noise = torch.randn(3, 6, generator=g, dtype=torch.float64), torch.randn(3, 6, generator=g, dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    log_snr = rectified_log_snr(t)
    s = torch.sigmoid(-log_snr / 2)[:, None]              # t after the endpoint remap, within 1e-4 of t
    torch.testing.assert_close(s[:, 0], t, atol=1e-4, rtol=0)
    z = model_input("flow", add_noise(x0, noise, log_snr), log_snr)
    torch.testing.assert_close(z, (1 - s) * x0 + s * noise)
    torch.testing.assert_close(training_target("flow", x0, noise, log_snr), noise - x0)
    assert model_input("v", z, log_snr) is z


def test_rectified_schedule_is_finite_and_monotone():
    from vidiff.diffusion import rectified_log_snr
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    log_snr = rectified_log_snr(t)
    assert torch.isfinite(log_snr).all() and (log_snr.diff() < 0).all()
    assert log_snr[0].item() == pytest.approx(20.0) and log_snr[-1].item() == pytest.approx(-20.0)
    assert rectified_log_snr(torch.tensor([0.5], dtype=torch.float64)).abs().item() < 1e-9


def test_logit_normal_times_concentrate_in_the_middle():
    from vidiff.diffusion import training_times
    g = torch.Generator().manual_seed(0)
    uniform, logit = training_times(4096, g), training_times(4096, g, "logit_normal")
    assert ((uniform - 0.5).abs() < 0.25).float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert ((logit - 0.5).abs() < 0.25).float().mean().item() == pytest.approx(0.728, abs=0.02)  # P(|N(0,1)| < logit(0.75))
    with pytest.raises(ValueError, match="logit_normal"):
        training_times(2, g, "beta")
