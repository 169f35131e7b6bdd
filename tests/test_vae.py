"""The causal video VAE: shapes for 1 and N frames, causality, tiled decoding, and learning."""
import numpy as np
import pytest
import torch

from vidiff.errors import VidiffError
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
        assert z.shape == (2, 4, latent_frames, 4, 6) and z.shape[1:] == vae.latent_shape(frames, 16, 24)
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
        z = torch.randn(1, 4, 7, 12, 20)
        full = vae.decode(z)
        for tile, frames in [(32, 3), (6, 3)]:
            torch.testing.assert_close(vae.decode_tiled(z, tile=tile, frames=frames), full, atol=2e-5, rtol=1e-4)


def test_psnr_and_ssim_reference_values():
    from vidiff.evaluation.reconstruction import psnr, ssim
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 24, 24, 3), dtype=np.uint8)
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0)
    b = np.clip(a.astype(int) + 5, 0, 255).astype(np.uint8)          # off by 5 almost everywhere
    assert psnr(a, b) == pytest.approx(10 * np.log10(255 ** 2 / np.mean((a.astype(float) - b) ** 2)))
    assert 0 < ssim(a, rng.integers(0, 256, a.shape, dtype=np.uint8)) < 0.1 < ssim(a, b) < 1


def vae_values(**train):
    return {"vae": {"channels": 8, "channel_mults": [1, 2, 2], "latent_channels": 4},
            "data": {"frames": 4, "size": 16, "shapes": {"max_objects": 1, "radius": [0.25, 0.3], "num_clips": 1}},
            "train": {"steps": 80, "batch_size": 2, "lr": 3e-3, "warmup_steps": 5, "log_every": 5,
                      "checkpoint_every": 40, "sample_every": 1000, **train}}


@pytest.mark.slow   # in CI's second pass (.ci/run), not the default suite
def test_vae_training_learns_resumes_and_reconstructs_from_the_cli(tmp_path):
    import subprocess
    import sys

    import yaml
    from vidiff.config import config_from_dict
    from vidiff.data.io import read_video, save_video, to_uint8
    from vidiff.checkpoint import load_vae
    from vidiff.training import Trainer, VAETask
    trainer = Trainer(config_from_dict(vae_values()), tmp_path / "vae", progress=False, task=VAETask)
    trainer.train()
    first, last = trainer.history[0]["l1"], trainer.history[-1]["l1"]
    assert last < 0.3 * first, (first, last)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(vae_values()))
    r = subprocess.run([sys.executable, "-m", "vidiff", "train-vae", "--out", str(tmp_path / "vae"), "--resume",
                        "--steps", "85", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and '"steps": 85' in r.stdout, r.stderr[-2000:]
    vae, _ = load_vae(tmp_path / "vae")
    clip = to_uint8(trainer.task.dataset[0]["video"])
    save_video(clip, tmp_path / "in.mp4")
    r = subprocess.run([sys.executable, "-m", "vidiff", "reconstruct", str(tmp_path / "in.mp4"), str(tmp_path / "out.mp4"),
                        "--vae", str(tmp_path / "vae"), "--tile", "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "out.mp4").is_file() and "PSNR" in r.stdout
    # written 4x enlarged (an MP4's half-resolution colour would smear 32-px frames), --scale 1 as read
    assert read_video(tmp_path / "out.mp4").shape[1:3] == (4 * clip.shape[1], 4 * clip.shape[2])
    r = subprocess.run([sys.executable, "-m", "vidiff", "reconstruct", str(tmp_path / "in.mp4"), str(tmp_path / "o1.gif"),
                        "--vae", str(tmp_path / "vae"), "--scale", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and read_video(tmp_path / "o1.gif").shape[1:3] == clip.shape[1:3], r.stderr[-2000:]
    # a latent diffusion model lends its VAE; a VAE's weights are not a diffusion model
    r = subprocess.run([sys.executable, "-m", "vidiff", "reconstruct", str(tmp_path / "in.mp4"), str(tmp_path / "o2.mp4"),
                        "--vae", "default"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "PSNR" in r.stdout, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-m", "vidiff", "generate", "a red circle", "--model", str(tmp_path / "vae"),
                        "--out", str(tmp_path / "g.mp4")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "not a 'unet3d'" in r.stderr, r.stderr[-2000:]


def test_patch_discriminator_learns_to_tell_clips_from_blurred_copies():
    from vidiff.config import DataConfig, ShapesConfig
    from vidiff.data import ShapesDataset, collate
    from vidiff.models.discriminator import PatchDiscriminator3D, discriminator_hinge_loss
    data = ShapesDataset(DataConfig(frames=4, size=16, shapes=ShapesConfig(max_objects=1, radius=[0.25, 0.3])))

    def batch(start):
        real = collate([data[start + i] for i in range(8)])["video"]
        blurred = torch.nn.functional.avg_pool3d(real, (1, 3, 3), stride=1, padding=(0, 1, 1), count_include_pad=False)
        return real, blurred

    torch.manual_seed(0)
    disc = PatchDiscriminator3D(3, 8)
    assert disc(torch.zeros(2, 3, 1, 16, 16)).shape == (2, 1, 1, 2, 2)     # an image is a 1-frame clip
    optimizer = torch.optim.Adam(disc.parameters(), lr=2e-3, betas=(0.5, 0.9))
    for step in range(60):
        real, fake = batch(8 * step)
        loss = discriminator_hinge_loss(disc(real), disc(fake))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    real, fake = batch(10**6)                                                 # held-out clips
    with torch.no_grad():
        assert disc(real).mean() > disc(fake).mean() + 0.5


def test_adversarial_vae_training_checkpoints_and_resumes_exactly(tmp_path):
    from vidiff.config import config_from_dict
    from vidiff.training import Trainer, VAETask
    values = vae_values(steps=4, checkpoint_every=2, log_every=1)
    values["vae"].update(adversarial_weight=0.5, adversarial_start=1, discriminator_channels=8)
    full = Trainer(config_from_dict(values), tmp_path / "full", progress=False, task=VAETask)
    full.train()
    assert "adversarial" not in full.history[0] and full.history[1]["adversarial_weight"] > 0
    assert "discriminator" in full.history[-1]
    assert (tmp_path / "full" / "checkpoints" / "step_00000004" / "discriminator.safetensors").is_file()
    part = Trainer(config_from_dict({**values, "train": {**values["train"], "steps": 2}}), tmp_path / "part", progress=False, task=VAETask)
    part.train()
    resumed = Trainer(config_from_dict(values), tmp_path / "part", resume=True, progress=False, task=VAETask)
    resumed.train()
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    for a, b in zip(full.task.disc.state_dict().values(), resumed.task.disc.state_dict().values()):
        assert torch.equal(a, b)
    values["vae"]["adversarial_weight"] = -1.0
    with pytest.raises(VidiffError, match="adversarial_weight"):
        Trainer(config_from_dict(values), tmp_path / "bad", progress=False, task=VAETask)


def test_train_lora_on_a_vae_run_is_refused_before_anything_trains(tmp_path):
    from vidiff.config import config_from_dict
    from vidiff.training import Trainer, VAETask
    with pytest.raises(VidiffError, match="train.lora adapts text-to-video models"):
        Trainer(config_from_dict(vae_values(lora={"rank": 2})), tmp_path / "vae", progress=False, task=VAETask)
    assert not (tmp_path / "vae").exists()


def test_latent_noise_perturbs_only_what_the_decoder_sees():
    """vae.latent_noise: the decoder draws from noised latents (a std up to the value, per clip), while the
    posterior the KL term reads is the encoder's own."""
    torch.manual_seed(0)
    vae = VideoVAE(channels=8, channel_mults=(1, 2), latent_channels=4).eval()
    x = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    clean, mean, logvar = vae(x, torch.Generator().manual_seed(0))
    noisy, mean2, logvar2 = vae(x, torch.Generator().manual_seed(0), latent_noise=0.5)
    assert torch.equal(mean, mean2) and torch.equal(logvar, logvar2)
    assert not torch.allclose(clean, noisy)
    assert torch.equal(clean, vae(x, torch.Generator().manual_seed(0), latent_noise=0.0)[0])
