"""Training-free frame conditioning on two perfectly known correlated 'frames' of Gaussian data, where
the exact conditional of the second frame given the first is known in closed form."""
import pytest
import torch

from vidiff.diffusion import SCHEDULES, ddim, sampling_grid
from vidiff.diffusion.conditioning import frame_mask, reconstruction_guidance, replacement
from vidiff.diffusion.schedules import alpha_sigma

MU = torch.tensor([0.5, -0.5], dtype=torch.float64)
SIGMA = torch.tensor([[1.0, 0.9], [0.9, 1.0]], dtype=torch.float64)   # frames correlated 0.9
KNOWN = 1.5                                                           # the value of frame 0


def exact_denoiser(x_t, log_snr):
    """E[x0 | x_t] for x0 ~ N(MU, SIGMA) over the 2 frames of (B, 1, 2, 1, 1) videos."""
    alpha, sigma = alpha_sigma(log_snr[0])
    x = x_t.view(-1, 2)
    gain = alpha * SIGMA @ torch.linalg.inv(alpha ** 2 * SIGMA + sigma ** 2 * torch.eye(2, dtype=torch.float64))
    x0 = MU + (x - alpha * MU) @ gain.T
    x0 = x0.view(x_t.shape)
    return x0, (x_t - alpha * x0) / sigma


def conditional_samples(wrap, n=4000):
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(n, 1, 2, 1, 1, generator=g, dtype=torch.float64)
    known = torch.full((n, 1, 2, 1, 1), KNOWN, dtype=torch.float64)
    mask = frame_mask("first", 2)
    denoiser = wrap(exact_denoiser, known, mask)
    return ddim(denoiser, x_T, sampling_grid(SCHEDULES["cosine"], 100), generator=g).view(n, 2)


def test_masks():
    assert frame_mask("first", 4).tolist() == [True, False, False, False]
    assert frame_mask("first_k", 4, 2).tolist() == [True, True, False, False]
    assert frame_mask("every_k", 7, 3).tolist() == [True, False, False, True, False, False, True]
    assert not frame_mask("none", 3).any() and not frame_mask("random", 1, generator=torch.Generator()).all()
    with pytest.raises(ValueError, match="first_k"):
        frame_mask("last", 3)


@pytest.mark.parametrize("wrap", [replacement, reconstruction_guidance])
def test_known_frames_come_out_exactly(wrap):
    x = conditional_samples(wrap, n=200)
    torch.testing.assert_close(x[:, 0], torch.full((200,), KNOWN, dtype=torch.float64))


def test_reconstruction_guidance_follows_the_true_conditional_better_than_replacement():
    """Frame 1 given frame 0 = 1.5 has mean -0.5 + 0.9 * (1.5 - 0.5) = 0.4 and std sqrt(1 - 0.81)."""
    true_mean, true_std = 0.4, (1 - 0.81) ** 0.5
    error = lambda x: abs(x[:, 1].mean().item() - true_mean) + abs(x[:, 1].std().item() - true_std)
    plain, guided = error(conditional_samples(replacement)), error(conditional_samples(reconstruction_guidance))
    unconditional = abs(-0.5 - true_mean) + abs(1.0 - true_std)
    assert guided < 0.5 * plain < 0.5 * unconditional, (guided, plain)
