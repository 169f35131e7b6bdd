"""`vidiff serve`: the jobs behind each tab, the named API through gradio_client, and the page in a
real browser (Debian's chromium driven by playwright; skipped where either is missing, installed by
.ci/run). Screenshots of each tab go to $VIDIFF_SCREENSHOTS (docs/ regenerates the README's)."""
import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

gr = pytest.importorskip("gradio")
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
try:        # imported here, in one thread: imported inside a test it raced the server's threads' imports
    import playwright.sync_api as playwright_api   # (CPython 3.11's module-lock KeyError, seen once in CI)
except ImportError:
    playwright_api = None

from conftest import tiny_config_dict  # noqa: E402
from vidiff.config import config_from_dict  # noqa: E402
from vidiff.data.io import read_video, save_video  # noqa: E402
from vidiff.errors import VidiffError  # noqa: E402
from vidiff.training import Trainer  # noqa: E402
from vidiff.webui import Limits  # noqa: E402
from vidiff.webui.jobs import Jobs  # noqa: E402
from vidiff.webui.limits import inside, run_folders  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A runs directory with one tiny masked-frame run (2 checkpoints, samples, loss plot)."""
    root = tmp_path_factory.mktemp("runs")
    values = tiny_config_dict(steps=4, sample_every=2)
    values["model"]["frame_conditioning"] = True
    Trainer(config_from_dict(values), root / "tiny", progress=False).train()
    (root / "not-a-run").mkdir()
    return root


@pytest.fixture(scope="module")
def server(runs):
    from vidiff.webui.app import build_app
    jobs = Jobs(runs / "tiny", runs, Limits(upload_mb=2, frames=64, side=256, steps=50))
    app = build_app(jobs)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                           max_file_size="2mb")
    yield url, jobs
    app.close()


def clip(frames=4, size=16) -> np.ndarray:
    video = np.zeros((frames, size, size, 3), np.uint8)
    for t in range(frames):
        video[t, 5:10, 2 + t:7 + t] = (220, 30, 30)
    return video


def test_run_folders_and_no_way_out_of_the_runs_directory(runs):
    assert run_folders(runs) == ["tiny"]
    assert inside(runs, "tiny") == (runs / "tiny").resolve()
    (runs / "escape").symlink_to(runs.parent, target_is_directory=True)
    try:
        for bad in ("../", "/etc", "escape", "missing"):
            with pytest.raises(VidiffError, match="not a run folder"):
                inside(runs, bad)
    finally:
        (runs / "escape").unlink()
    with pytest.raises(VidiffError, match="without --runs"):
        inside(None, "tiny")


def test_the_server_keeps_at_most_two_pipelines_loaded(runs):
    jobs = Jobs(runs / "tiny", runs)
    checkpoints = jobs.run_info("tiny")[3]
    assert len(checkpoints) == 2
    jobs.pipeline("default")
    for checkpoint in checkpoints:
        jobs.generate_from_checkpoint("tiny", checkpoint, "a red circle bouncing")
    assert list(jobs.cache) == [f"tiny/checkpoints/{c}" for c in checkpoints]       # the oldest went first
    default = jobs.pipeline("default")
    assert list(jobs.cache) == [f"tiny/checkpoints/{checkpoints[1]}", "default"] and jobs.pipeline("default") is default


def test_a_diffusers_format_model_under_runs_is_offered_and_makes_text_to_video(tmp_path):
    pytest.importorskip("diffusers")
    from vidiff.models.external.random_wan import save_random_wan
    save_random_wan(tmp_path / "wan-tiny")
    jobs = Jobs(runs=tmp_path)
    assert jobs.models() == ["default", "wan-tiny"] and jobs.run_names() == []      # its parts are not runs
    assert jobs.defaults("wan-tiny") == (50, 5.0, "scheduler", "model", 81) and "any words" in jobs.vocabulary("wan-tiny")
    mp4, gif, png = jobs.generate("a red ball bounces", "wan-tiny", frames=5, steps=1)
    assert read_video(mp4).shape == (5, 480, 832, 3)                  # large frames are not enlarged further
    assert jobs.size("wan-tiny") == "480x832"
    assert read_video(jobs.generate("a red ball bounces", "wan-tiny", frames=5, steps=1, size="32x48")[0]).shape[1:3] \
        == (32 * 4, 48 * 4)                                           # the size field; small frames enlarged for the page
    with pytest.raises(VidiffError, match="the size takes S or HxW"):
        jobs.generate("a red ball bounces", "wan-tiny", frames=5, steps=1, size="big")
    assert jobs.pipeline("wan-tiny").bundle.codec.time_factor == 4     # the same pipeline as every model's
    with pytest.raises(VidiffError, match="packs 4 frames"):           # its tabs answer as the pipeline does
        jobs.interpolate(np.zeros((2, 8, 8, 3), np.uint8), 2, "a red ball", "wan-tiny")


def test_jobs_check_limits_before_any_work(runs):
    jobs = Jobs(runs / "tiny", runs, Limits(frames=3, side=12, steps=5))
    with pytest.raises(VidiffError, match="between 1 and 3, got 8"):
        jobs.extend(clip(2), "a red circle bouncing", 8)
    with pytest.raises(VidiffError, match="4 frames; this server takes at most 3"):
        jobs.extend(clip(4), "a red circle bouncing", 3)
    with pytest.raises(VidiffError, match="at most 12 pixels"):
        jobs.image_to_video(clip(1, 16)[0], "a red circle bouncing")
    with pytest.raises(VidiffError, match="steps must be between 1 and 5"):
        jobs.generate("a red circle bouncing", steps=6)
    with pytest.raises(VidiffError, match="upload the video first"):
        jobs.interpolate(None, 2)


def test_every_job_returns_playable_files(server, tmp_path):
    _, jobs = server
    mp4, gif, png = jobs.generate("a red circle bouncing", steps=2)
    assert read_video(mp4).shape == (4, 64, 64, 3) and read_video(gif).shape[0] == 4 and Path(png).is_file()
    assert read_video(jobs.image_to_video(clip(1)[0], "a red circle bouncing", steps=2)[0]).shape[0] == 4
    save_video(clip(), tmp_path / "in.mp4")
    assert read_video(jobs.extend(str(tmp_path / "in.mp4"), "a red circle bouncing", 7, steps=2)[0]).shape[0] == 7
    with pytest.raises(VidiffError, match="trained with frame strides"):      # this tiny model has none
        jobs.extend(str(tmp_path / "in.mp4"), "a red circle bouncing", 7, steps=2, mode="hierarchical")
    assert read_video(jobs.interpolate(str(tmp_path / "in.mp4"), 2, steps=2)[0]).shape[0] == 7
    report, best, plot = jobs.evaluate([str(tmp_path / "in.mp4")], "a red circle bouncing")
    assert "permanence" in report and Path(best).is_file() and Path(plot).is_file()
    loss, samples, config, checkpoints = jobs.run_info("tiny")
    assert Path(loss).is_file() and Path(samples).is_file() and '"frame_conditioning": true' in config
    assert checkpoints == ["step_00000002", "step_00000004"]
    assert read_video(jobs.generate_from_checkpoint("tiny", "step_00000002", "a red circle bouncing")[0]).shape[0] == 4


def test_gradio_client_generate_errors_and_two_clients_at_once(server):
    from gradio_client import Client
    url, _ = server
    client = Client(url, verbose=False)
    video, gif, sheet = client.predict(prompt="a red circle bouncing", api_name="/generate")
    assert read_video(video).shape[0] == 4
    with pytest.raises(Exception, match="unknown word 'purple'"):
        client.predict(prompt="a purple dog", api_name="/generate")
    with pytest.raises(Exception, match="is not a run folder under this server's --runs"):   # our message, not gradio's
        client.predict(run="../../etc", api_name="/run_info")
    with pytest.raises(Exception, match="is not a run folder under this server's --runs"):
        client.predict(prompt="a red circle bouncing", model="/etc", api_name="/generate")
    results = []

    def call(seed):
        results.append(Client(url, verbose=False).predict(prompt="a blue square bouncing", seed=seed, steps=3,
                                                          api_name="/generate"))
    threads = [threading.Thread(target=call, args=(s,)) for s in (1, 2)]
    [t.start() for t in threads]
    [t.join(timeout=120) for t in threads]
    assert len(results) == 2 and all(read_video(r[0]).shape[0] == 4 for r in results)


@pytest.fixture
def page(server, tmp_path):
    if playwright_api is None:
        pytest.skip("playwright is not installed")
    playwright = playwright_api
    if not Path(CHROMIUM).is_file():
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    url, _ = server
    with playwright.sync_playwright() as p:
        # a persistent context is how playwright takes a fresh --user-data-dir
        browser = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM, args=FLAGS,
                                                       viewport={"width": 1280, "height": 1000})
        page = browser.new_page()
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url.rstrip("/"))
                   or route.request.url.startswith("data:") or route.request.url.startswith("blob:") else route.abort())
        page.goto(url)
        page.wait_for_selector("#generate")
        yield page
        browser.close()


def shot(page, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("VIDIFF_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"webui-{name}.png"), full_page=True)


def fetch_video(page, server, tmp_path, nth: int = 0) -> np.ndarray:
    src = page.locator("video").nth(nth).get_attribute("src")
    body = page.request.get(src if src.startswith("http") else server[0].rstrip("/") + src).body()
    (tmp_path / "got.mp4").write_bytes(body)
    return read_video(tmp_path / "got.mp4")


def test_browser_generate_bad_prompt_then_good_and_image_tab(page, server, tmp_path):
    page.fill("#prompt textarea", "a purple dog")
    page.click("#generate")
    page.get_by_text("unknown word 'purple'").first.wait_for(timeout=60_000)
    page.fill("#prompt textarea", "a red circle bouncing")          # the tiny run saw one object a clip
    page.click("#generate")
    page.wait_for_selector("video[src]", timeout=120_000)
    assert fetch_video(page, server, tmp_path).shape == (4, 64, 64, 3)
    shot(page, "text-to-video", tmp_path)

    page.get_by_role("tab", name="Image → video").click()
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(clip(1, 16)[0]).save(tmp_path / "first.png")
    page.locator("#image input[type=file]").set_input_files(str(tmp_path / "first.png"))
    page.wait_for_timeout(500)
    page.click("#animate")
    page.wait_for_function("document.querySelectorAll('video[src]').length >= 2", timeout=120_000)
    assert fetch_video(page, server, tmp_path, 1).shape[0] == 4
    shot(page, "image-to-video", tmp_path)
    for name, label in (("extend", "Extend"), ("interpolate", "Interpolate"), ("evaluate", "Evaluate"), ("runs", "Runs")):
        page.get_by_role("tab", name=label).click()
        page.wait_for_timeout(300)
        shot(page, name, tmp_path)
