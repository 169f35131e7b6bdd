import numpy as np
import pytest
from PIL import Image

from vidiff.config import DataConfig, ShapesConfig
from vidiff.data import ShapesDataset
from vidiff.data.io import contact_sheet, read_video, save_video, tile, to_uint8, upscale
from vidiff.errors import VidiffError


@pytest.fixture
def clip():
    return to_uint8(ShapesDataset(DataConfig(frames=6, shapes=ShapesConfig(max_objects=2)))[3]["video"])   # (T, H, W, 3)


def test_mp4_round_trip_keeps_the_picture(clip, tmp_path):
    save_video(upscale(clip, 4), tmp_path / "c.mp4")
    decoded = read_video(tmp_path / "c.mp4")
    assert decoded.shape == (6, 128, 128, 3)
    assert np.abs(decoded.astype(int) - upscale(clip, 4)).mean() < 4   # H.264 at crf 15 is near lossless here


def test_gif_keeps_frames_and_png_sheet_lays_them_out(clip, tmp_path):
    save_video(clip, tmp_path / "c.gif")
    gif = Image.open(tmp_path / "c.gif")
    assert gif.n_frames == 6
    save_video(clip, tmp_path / "c.png")
    sheet = np.asarray(Image.open(tmp_path / "c.png"))
    assert sheet.shape == (32, 6 * 33 - 1, 3)
    assert np.array_equal(sheet[:, 33:65], clip[1])
    assert np.array_equal(contact_sheet(clip), sheet)


def test_tile_places_videos_in_a_grid(clip):
    grid = tile(np.stack([clip, clip[::-1], clip]), columns=2)
    assert grid.shape == (6, 65, 65, 3)
    assert np.array_equal(grid[:, 33:, :32], clip)


def test_broken_files_are_one_line_errors(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"\x00garbage" * 100)
    for name in ("empty.mp4", "junk.mp4", "missing.mp4"):
        with pytest.raises(VidiffError) as e:
            read_video(tmp_path / name)
        assert "\n" not in str(e.value)
