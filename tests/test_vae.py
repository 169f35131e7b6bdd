"""The causal video VAE: shapes for 1 and N frames, causality, tiled decoding, and learning."""
import pytest
import torch

from vidiff.models.vae import VideoVAE


def tiny_vae(temporal=1, seed=0):
    torch.manual_seed(seed)
    return VideoVAE(3, channels=8, channel_mults=(1, 2, 2), latent_channels=4, temporal_downsample=temporal).eval()


@pytest.mark.parametrize("temporal,frames,latent_frames", [(1, 1, 1), (1, 6, 6), (4, 1, 1), (4, 9, 3), (4, 17, 5)])
def test_encode_decode_shapes_for_images_and_clips(temporal, frames, latent_frames):
    vae = tiny_vae(temporal)
    x = torch.rand(2, 3, frames, 16, 24) * 2 - 1
    with torch.no_grad():
        z, mean, logvar = vae.encode(x)
        assert z.shape == (2, 4, latent_frames, 4, 6) == vae.latent_shape(frames, 16, 24)[:0] + z.shape
        assert vae.decode(z).shape == x.shape


@pytest.mark.parametrize("temporal", [1, 4])
def test_encoder_and_decoder_are_causal_in_time(temporal):
    vae = tiny_vae(temporal)
    x = torch.randn(1, 3, 9, 16, 16)
    y = x.clone()
    y[:, :, 5:] += 1.0                                       # change the future only
    with torch.no_grad():
        zx, zy = vae.encode(x)[0], vae.encode(y)[0]
        cut = 1 + (5 - 1) // temporal                        # latent frames built from frames < 5 only
        torch.testing.assert_close(zx[:, :, :cut], zy[:, :, :cut])
        assert (zx[:, :, cut:] - zy[:, :, cut:]).abs().max() > 1e-4
        # the first frame alone encodes to the first latent of the clip: an image is a 1-frame video
        torch.testing.assert_close(vae.encode(x[:, :, :1])[0], zx[:, :, :1])


def test_bad_frame_count_is_a_clear_error():
    with pytest.raises(ValueError, match="T = 1 \\+ 4k"):
        tiny_vae(4).encode(torch.randn(1, 3, 8, 16, 16))


@pytest.mark.parametrize("temporal", [1, 4])
def test_tiled_decode_matches_untiled(temporal):
    vae = tiny_vae(temporal)
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.05 * torch.randn_like(p))
        z = torch.randn(1, 4, 11, 20, 28)
        full = vae.decode(z)
        for tile, frames in [(32, 3), (8, 4)]:
            torch.testing.assert_close(vae.decode_tiled(z, tile=tile, frames=frames), full, atol=2e-5, rtol=1e-4)
