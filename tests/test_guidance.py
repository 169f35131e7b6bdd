import torch

from vidiff.diffusion import classifier_free_guidance, compositional_guidance


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


def test_guidance_interval_guides_only_inside_and_skips_the_unconditional_pass_outside():
    calls = []

    def model(x, log_snr, context):
        calls.append(x.shape[0])
        return fake_model(x, log_snr, context)
    x, cond, uncond = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    fn = classifier_free_guidance(model, (cond,), (uncond,), 3.0, interval=(0.5, 2.0))
    sigma = torch.tensor([0.25, 1.0, 4.0])            # below, inside, above (0.5, 2]
    log_snr = -2 * sigma.log()
    out_c, out_u = fake_model(x, log_snr, cond), fake_model(x, log_snr, uncond)
    want = torch.stack([out_c[0], out_u[1] + 3.0 * (out_c[1] - out_u[1]), out_c[2]])
    torch.testing.assert_close(fn(x, log_snr), want)
    calls.clear()
    outside = torch.full((3,), -2 * torch.tensor(4.0).log().item())
    torch.testing.assert_close(fn(x, outside), fake_model(x, outside, cond))
    assert calls == [3]                                # one conditional pass, no unconditional one


def test_guidance_interval_is_checked_in_the_config():
    import pytest
    from vidiff.config import config_from_dict
    from vidiff.errors import VidiffError
    assert config_from_dict({"diffusion": {"guidance_interval": [0.3, 5.0]}}).diffusion.guidance_interval == [0.3, 5.0]
    for bad in ([1.0], [5.0, 0.3], [-1.0, 2.0]):
        with pytest.raises(VidiffError, match="guidance_interval"):
            config_from_dict({"diffusion": {"guidance_interval": bad}})


def test_compositional_guidance_is_cfg_for_one_drop_and_sums_the_directions_of_two():
    calls = []

    def model(x, log_snr, context, frames):
        calls.append(x.shape[0])
        return fake_model(x, log_snr, context) + 2 * frames
    x, log_snr = torch.randn(3, 4), torch.randn(3)
    text, null, frames, none = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4), torch.zeros(3, 4)
    c, u_text, u_frames = model(x, log_snr, text, frames), model(x, log_snr, null, frames), model(x, log_snr, text, none)
    one = compositional_guidance(model, (text, frames), [((null, frames), 2.5)])(x, log_snr)
    torch.testing.assert_close(one, classifier_free_guidance(model, (text, frames), (null, frames), 2.5)(x, log_snr))
    calls.clear()
    two = compositional_guidance(model, (text, frames), [((null, frames), 2.5), ((text, none), 3.0)])(x, log_snr)
    torch.testing.assert_close(two, c + 1.5 * (c - u_text) + 2.0 * (c - u_frames))
    assert calls == [9]                                # one batched forward of the three passes
    unguided = compositional_guidance(model, (text, frames), [((null, frames), 1.0), ((text, none), 1.0)])
    torch.testing.assert_close(unguided(x, log_snr), c)
