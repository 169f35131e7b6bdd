import json

import numpy as np
import pytest
from PIL import Image

from vidiff.config import DataConfig, ShapesConfig
from vidiff.data.io import save_video
from vidiff.errors import VidiffError
from vidiff.evaluation import sources
from vidiff.evaluation.report import score_all, write_report


def test_report_files_and_summary(tmp_path):
    names, videos, captions = sources.ground_truth(DataConfig(shapes=ShapesConfig(max_objects=1)), 3)
    rows = score_all(names, videos, captions, progress=False)
    summary = write_report(tmp_path, rows, videos, "truth")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"] == summary and len(report["videos"]) == 3
    assert summary["fidelity"] == 1.0 and summary["dynamic_degree"] == 1.0
    assert "| permanence ↑ |" in (tmp_path / "report.md").read_text()
    assert Image.open(tmp_path / "best_worst.png").size[0] > 100 and (tmp_path / "metrics.png").is_file()


def test_folder_with_videos_frame_folders_and_captions(tmp_path):
    names, videos, captions = sources.ground_truth(DataConfig(frames=6, shapes=ShapesConfig(max_objects=1)), 2)
    save_video(videos[0], tmp_path / "a.mp4")
    save_video(videos[1], tmp_path / "b.gif")
    (tmp_path / "frames").mkdir()
    for t, frame in enumerate(videos[0]):
        Image.fromarray(frame).save(tmp_path / "frames" / f"{t:03d}.png")
    (tmp_path / "captions.jsonl").write_text(json.dumps({"file": "a.mp4", "caption": captions[0]}) + "\n")
    (tmp_path / "b.txt").write_text(captions[1])
    found_names, clips, texts, skipped = sources.load_folder(tmp_path)
    assert skipped == []
    assert found_names == ["a.mp4", "b.gif", "frames"]
    assert [c.shape[0] for c in clips] == [6, 6, 6] and texts == [captions[0], captions[1], None]
    rows = score_all(found_names, clips, texts, progress=False)
    assert rows[0]["fidelity"] == 1.0 and rows[1]["fidelity"] == 1.0
    assert "fidelity" not in rows[2] and np.isfinite(rows[2]["warping_error"])   # no caption: temporal only


def test_folder_errors_are_one_line(tmp_path):
    with pytest.raises(VidiffError, match="no readable videos"):
        sources.load_folder(tmp_path)
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(VidiffError, match="no readable videos .*1 skipped"):   # skipped and counted, not fatal
        sources.load_folder(tmp_path)
    (tmp_path / "broken.mp4").unlink()
    (tmp_path / "captions.jsonl").write_text("{not json\n")
    with pytest.raises(VidiffError, match="line 1"):
        sources.load_folder(tmp_path)
