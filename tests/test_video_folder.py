"""Real-video folders: decoding, sampling, crops, images as 1-frame videos, and broken files that are
skipped with a reason instead of stopping the run."""
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config_dict
from vidiff.config import DataConfig, FolderConfig, config_from_dict
from vidiff.data import VideoFolderDataset
from vidiff.data.io import save_video
from vidiff.errors import VidiffError
from vidiff.training import Trainer

VOCAB = ["a", "red", "circle", "bouncing", "blue", "square"]
BROKEN = {"empty.mp4": "empty file", "garbage.mp4": "unreadable", "truncated.mp4": "unreadable",
          "short.mp4": "too short", "uncaptioned.mp4": "no caption", "strange.mp4": "not in model.text.vocab",
          "bad.png": "unreadable"}


def moving_square(frames: int, h: int, w: int, colour=(230, 40, 40)) -> np.ndarray:
    video = np.zeros((frames, h, w, 3), np.uint8)
    for t in range(frames):
        video[t, 8:20, 2 + 2 * t: 14 + 2 * t] = colour
    return video


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    captions = {}
    for i, name in enumerate(["a.mp4", "b.mp4", "c.gif"]):
        save_video(moving_square(20, 32, 48), root / name, fps=8)
        captions[name] = "a red circle bouncing" if i % 2 else "a blue square"
    (root / "sub").mkdir()
    Image.fromarray(moving_square(1, 40, 40)[0]).save(root / "sub" / "still.png")
    captions["sub/still.png"] = "a red square"
    (root / "empty.mp4").write_bytes(b"")
    (root / "garbage.mp4").write_bytes(os.urandom(3000))
    good = (root / "a.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(good[: len(good) // 2])
    save_video(moving_square(3, 32, 32), root / "short.mp4")
    save_video(moving_square(20, 32, 32), root / "uncaptioned.mp4")
    save_video(moving_square(20, 32, 32), root / "strange.mp4")
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    captions.update({"empty.mp4": "a red circle", "garbage.mp4": "a red circle", "truncated.mp4": "a red circle",
                     "short.mp4": "a red circle", "strange.mp4": "a purple elephant", "bad.png": "a red circle"})
    (root / "captions.jsonl").write_text("".join(json.dumps({"path": k, "caption": v}) + "\n" for k, v in captions.items()))
    return root


def data_config(folder, **kw):
    return DataConfig(type="folder", frames=8, size=16, folder=FolderConfig(path=str(folder), frame_stride=2, **kw))


def test_broken_files_are_skipped_with_a_warning_naming_each(folder):
    with pytest.warns(UserWarning) as record:
        data = VideoFolderDataset(data_config(folder), VOCAB)
    reasons = dict(data.skipped)
    assert set(reasons) == set(BROKEN)
    for name, why in BROKEN.items():
        assert why in reasons[name], (name, reasons[name])
        assert any(name in str(w.message) for w in record)
    assert sorted(e.path.name for e in data.videos) == ["a.mp4", "b.mp4", "c.gif"]
    assert [e.path.name for e in data.images] == ["still.png"]


def test_clips_are_cropped_resized_normalised_and_reproducible(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = VideoFolderDataset(data_config(folder, crop="random"), VOCAB)
    item = data.item(0, 1, 2)
    assert item["video"].shape == (3, 8, 16, 16)
    assert item["video"].min() >= -1 and item["video"].max() <= 1 and torch.isfinite(item["video"]).all()
    assert item["caption"] in ("a red circle bouncing", "a blue square")
    torch.testing.assert_close(data.item(0, 1, 2)["video"], item["video"], atol=0, rtol=0)
    # the square moves right 2 px per source frame: 4 px per clip frame at stride 2, 2 px after halving the size
    red = (item["video"][0] > 0).float()                                   # (T, H, W)
    centre = (red.sum(1) * torch.arange(16.0)).sum(-1) / red.sum((1, 2))   # column of the square's centroid
    whole = red.sum((1, 2)) == red.sum((1, 2)).max()                     # frames where the crop shows all of it
    assert whole.sum() >= 3 and red.sum((1, 2)).gt(0).all()
    torch.testing.assert_close(centre[whole].diff(), torch.full((int(whole.sum()) - 1,), 2.0), atol=0.25, rtol=0)
    # every image_every-th batch is the image, as a 1-frame video
    assert data.item(3, 0, 2)["video"].shape == (3, 1, 16, 16)


def test_a_file_that_breaks_after_the_check_is_skipped_at_decode_time(folder, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = VideoFolderDataset(data_config(copy, image_every=0), VOCAB)
        for entry in data.videos:
            if entry.path.name == "a.mp4":
                entry.path.write_bytes(b"")
        items = [data.item(0, j, 3) for j in range(3)]
    assert all(it["video"].shape == (3, 8, 16, 16) for it in items)
    assert all(not it["path"].endswith("a.mp4") for it in items)
    assert any(name == "a.mp4" and "decode failed" in why for name, why in data.skipped)


def test_a_bug_in_decoding_stops_instead_of_skipping_every_file(folder, monkeypatch):
    """Only what broken files raise is a skip; anything else is our bug and must surface."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = VideoFolderDataset(data_config(folder, image_every=0), VOCAB)
    monkeypatch.setattr(VideoFolderDataset, "load", lambda self, entry, rng: {}["missing key"])
    with pytest.raises(KeyError):
        data.item(0, 0, 1)
    assert not any("decode failed" in why for _, why in data.skipped)


def test_training_on_a_folder_with_workers_reports_skipped_files(folder, tmp_path):
    values = tiny_config_dict(steps=2, checkpoint_every=2)
    values["data"] = {"type": "folder", "frames": 4, "size": 16, "workers": 1,
                      "folder": {"path": str(folder), "frame_stride": 2, "image_every": 2}}
    values["model"]["text"]["vocab"] = VOCAB
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = Trainer(config_from_dict(values), tmp_path / "run", progress=False).train()
    assert summary["steps"] == 2 and summary["skipped_files"] == len(BROKEN)
    assert np.isfinite(summary["final_loss"])


def test_missing_folder_and_empty_folder_are_one_line_errors(tmp_path):
    with pytest.raises(VidiffError, match="is not a folder"):
        VideoFolderDataset(data_config(tmp_path / "nope"))
    (tmp_path / "x.mp4").write_bytes(b"")
    with pytest.raises(VidiffError, match="vidiff data check"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        VideoFolderDataset(data_config(tmp_path))


def test_data_check_command_lists_every_skip_and_the_vocabulary(folder):
    result = subprocess.run([sys.executable, "-m", "vidiff", "data", "check", str(folder), "--frames", "8",
                             "--frame-stride", "2"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for name, why in BROKEN.items():
        if name != "strange.mp4":            # without a config there is no vocabulary to violate
            assert f"skip  {name}: " in result.stdout and why in result.stdout
    assert "5 usable (4 videos, 1 images), 6 skipped" in result.stdout
    assert "purple" in result.stdout.splitlines()[-1]


def test_the_vae_trains_on_a_folder_without_needing_captions(folder, tmp_path):
    from test_vae import vae_values
    from vidiff.training import Trainer, VAETask
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = VideoFolderDataset(data_config(folder), captions=False)
        values = vae_values(steps=2, checkpoint_every=2, log_every=1)
        values["data"] = {"type": "folder", "frames": 4, "size": 16,
                          "folder": {"path": str(folder), "frame_stride": 2, "image_every": 0}}
        trainer = Trainer(config_from_dict(values), tmp_path / "vae", progress=False, task=VAETask)
        trainer.train()
    assert "uncaptioned.mp4" in {e.path.name for e in data.videos}
    assert "uncaptioned.mp4" not in dict(data.skipped) and "garbage.mp4" in dict(data.skipped)
    assert "uncaptioned.mp4" in {e.path.name for e in trainer.task.dataset.videos}
    assert len(trainer.history) == 2 and all(np.isfinite(h["loss"]) for h in trainer.history)
