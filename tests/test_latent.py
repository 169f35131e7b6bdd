"""Latent diffusion end to end: a VAE run, a diffusion run on its latents, generation through the
pipeline in pixels, and the VAE travelling inside the checkpoint."""
import pytest
import torch

from conftest import tiny_config_dict
from test_vae import vae_values
from vidiff.config import config_from_dict
from vidiff.pipeline import SampleOptions, VideoPipeline
from vidiff.checkpoint import export_pretrained
from vidiff.training import Trainer, VAETask


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("vae") / "run"
    Trainer(config_from_dict(vae_values(steps=20)), run, progress=False, task=VAETask).train()
    return run


@pytest.mark.parametrize("backbone", ["unet3d", "dit"])
def test_train_on_latents_then_generate_pixels(tmp_path, vae_run, backbone):
    values = tiny_config_dict(steps=3, checkpoint_every=3, vae=str(vae_run))
    values["data"]["shapes"]["num_clips"] = 2
    values["model"]["in_channels"] = 4
    if backbone == "dit":
        values["model"] = {"type": "dit", "in_channels": 4, "dit": {"width": 32, "depth": 1, "head_dim": 16, "patch": [1, 1, 1]},
                           "text": {"dim": 32, "layers": 1, "heads": 2}}
    trainer = Trainer(config_from_dict(values), tmp_path / "run", progress=False)
    assert trainer.task.codec.latent and 0 < trainer.task.codec.scale < 100
    trainer.train()
    assert len(trainer.task.latent_cache) == 2                       # two clips, encoded once each
    folder = export_pretrained(tmp_path / "run", tmp_path / "exported")
    assert (folder / "vae.safetensors").is_file()
    pipe = VideoPipeline.from_pretrained(folder, device="cpu")
    out = pipe("a red circle bouncing", sampling=SampleOptions(2, progress=False))
    assert out.pixels.shape == (1, 4, 16, 16, 3)                 # pixels, decoded from 4x4 latents
    from vidiff.errors import VidiffError
    with pytest.raises(VidiffError, match="a multiple of"):
        pipe("a red circle bouncing", height=10, width=10, sampling=SampleOptions(2, progress=False))
    # resuming reads the latent set-up from the checkpoint, not from the VAE run
    resumed = Trainer(config_from_dict({**values, "train": {**values["train"], "steps": 4}}), tmp_path / "run",
                      resume=True, progress=False)
    assert resumed.task.codec.scale == trainer.task.codec.scale and (tmp_path / "exported" / "config.json").is_file()
    resumed.train()


def test_folder_with_fixed_clips_encodes_each_file_once(tmp_path, vae_run):
    import warnings

    from test_video_folder import VOCAB, data_config, moving_square
    from vidiff.data import VideoFolderDataset
    from vidiff.data.io import save_video
    root = tmp_path / "videos"
    root.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        save_video(moving_square(20, 32, 48), root / name, fps=8)
        (root / name).with_suffix(".txt").write_text("a red circle bouncing")
    # a fixed clip is the same whatever batch draws the file; a random one is not
    fixed = VideoFolderDataset(data_config(root, crop="random", fixed_clips=True), VOCAB)
    free = VideoFolderDataset(data_config(root, crop="random"), VOCAB)
    by_path = lambda data, k: {(it := data.item(k, j, 3))["path"]: it["video"] for j in range(3)}
    first, later = by_path(fixed, 0), by_path(fixed, 5)
    assert all(torch.equal(first[p], later[p]) for p in first)
    assert not all(torch.equal(a, b) for a, b in zip(by_path(free, 0).values(), by_path(free, 5).values()))

    values = tiny_config_dict(steps=4, checkpoint_every=4, vae=str(vae_run))
    values["data"] = {"type": "folder", "frames": 4, "size": 16,
                      "folder": {"path": str(root), "frame_stride": 2, "crop": "random", "fixed_clips": True}}
    values["model"]["text"]["vocab"] = VOCAB
    values["model"]["in_channels"] = 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(config_from_dict(values), tmp_path / "run", progress=False)
        calls = []
        encode = trainer.task.codec.encode
        trainer.task.codec.encode = lambda video: calls.append(video.shape[0]) or encode(video)
        trainer.train()
    assert sorted(trainer.task.latent_cache) == sorted(str(root / n) for n in ("a.mp4", "b.mp4", "c.mp4"))
    assert sum(calls) <= 3 + 2 * 2        # batches of 2: once the three files are cached, no more encoding


def test_frame_conditioning_refuses_a_vae_that_compresses_time(tmp_path):
    from test_vae import vae_values
    from vidiff.errors import VidiffError
    values = vae_values(steps=1)
    values["vae"]["temporal_downsample"] = 4
    values["data"]["frames"] = 5
    Trainer(config_from_dict(values), tmp_path / "vae4", progress=False, task=VAETask).train()
    model = tiny_config_dict(vae=str(tmp_path / "vae4"))
    model["model"].update(in_channels=4, frame_conditioning=True)
    model["data"]["frames"] = 5
    with pytest.raises(VidiffError, match="without temporal compression"):
        Trainer(config_from_dict(model), tmp_path / "run", progress=False)


def test_decoder_fine_tune_of_a_latent_model_swaps_in_by_export(tmp_path, vae_run):
    """A VAE run initialised from a latent model trains only its decoder (train.trainable 'decoder.*'):
    the encoder stays bit-identical, so `export --vae` may put the new decoder beside the old diffusion
    weights; a VAE with another encoder is refused (its latents would mean something else)."""
    from vidiff.checkpoint import load_codec, load_vae, read_config
    from vidiff.errors import VidiffError
    values = tiny_config_dict(steps=2, checkpoint_every=2, vae=str(vae_run))
    values["model"]["in_channels"] = 4
    Trainer(config_from_dict(values), tmp_path / "model", progress=False).train()
    model = export_pretrained(tmp_path / "model", tmp_path / "exported")
    old = load_codec(model)

    tune = vae_values(steps=6, init_from=str(model), trainable="decoder.*", lr=1e-2)
    Trainer(config_from_dict(tune), tmp_path / "decoder", progress=False, task=VAETask).train()
    new = load_vae(tmp_path / "decoder")[0]
    for (name, a), b in zip(old.vae.encoder.state_dict().items(), new.encoder.state_dict().values()):
        assert torch.equal(a, b), name
    assert not all(torch.equal(a, b) for a, b in zip(old.vae.decoder.parameters(), new.decoder.parameters()))

    swapped = export_pretrained(model, tmp_path / "swapped", vae=tmp_path / "decoder")
    codec = load_codec(swapped)
    assert codec.scale == old.scale and read_config(swapped).vae == load_vae(tmp_path / "decoder")[1].vae
    for a, b in zip(codec.vae.decoder.parameters(), new.decoder.parameters()):
        assert torch.equal(a, b)
    out = VideoPipeline.from_pretrained(swapped, device="cpu")("a red circle bouncing",
                                                                sampling=SampleOptions(2, progress=False))
    assert out.pixels.shape == (1, 4, 16, 16, 3)

    other = tmp_path / "other"
    Trainer(config_from_dict(vae_values(steps=1, seed=7)), other, progress=False, task=VAETask).train()
    with pytest.raises(VidiffError, match="another encoder"):
        export_pretrained(model, tmp_path / "refused", vae=other)
    assert not (tmp_path / "refused").exists()
