import torch

from vidiff.diffusion import classifier_free_guidance


def fake_model(x, log_snr, context):
    return x * log_snr[:, None] + context


def test_guidance_extrapolates_from_unconditional_to_conditional():
    x, log_snr = torch.randn(3, 4), torch.randn(3)
    cond, uncond = torch.randn(3, 4), torch.randn(3, 4)
    out_c, out_u = fake_model(x, log_snr, cond), fake_model(x, log_snr, uncond)
    for scale in (0.0, 1.0, 3.0):
        guided = classifier_free_guidance(fake_model, (cond,), (uncond,), scale)(x, log_snr)
        torch.testing.assert_close(guided, out_u + scale * (out_c - out_u))


def test_guidance_runs_one_batched_forward():
    calls = []

    def model(x, log_snr, context):
        calls.append(x.shape[0])
        return fake_model(x, log_snr, context)
    classifier_free_guidance(model, (torch.ones(2, 4),), (torch.zeros(2, 4),), 2.0)(torch.randn(2, 4), torch.zeros(2))
    assert calls == [4]
