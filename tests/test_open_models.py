"""Diffusers-format open models (Wan 2.1) through vidiff, against diffusers' own WanPipeline on tiny
random-weight models that the tests build and save: same seed, same video."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline  # noqa: E402

from vidiff.errors import VidiffError  # noqa: E402
from vidiff.models.external.random_wan import save_random_wan  # noqa: E402
from vidiff.pipeline import VideoPipeline  # noqa: E402
from vidiff.pipeline.open_model import OpenVideoPipeline  # noqa: E402

PROMPT = "a red ball bounces over the table"
SIZE = dict(num_frames=9, height=32, width=48, num_inference_steps=4, guidance_scale=5.0)
TOLERANCE = 2          # in 8-bit levels


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory):
    return save_random_wan(tmp_path_factory.mktemp("wan") / "wan-tiny")


def reference(folder, prompt=PROMPT, negative="", seed=0, lora=None, scheduler=None, **size) -> np.ndarray:
    pipe = WanPipeline.from_pretrained(str(folder))
    if scheduler is not None:
        pipe.scheduler = scheduler
    if lora is not None:
        pipe.load_lora_weights(str(lora))
    pipe.set_progress_bar_config(disable=True)
    frames = pipe(prompt, negative_prompt=negative, generator=torch.Generator().manual_seed(seed), output_type="np",
                  **{**SIZE, **size}).frames
    return (np.asarray(frames) * 255).round().astype(int)


def ours(folder, prompt=PROMPT, negative="", seed=0, lora=None, **options) -> np.ndarray:
    pipe = VideoPipeline.from_pretrained(folder)
    assert isinstance(pipe, OpenVideoPipeline)
    pipe.progress = False
    if lora is not None:
        pipe.load_lora(lora)
    return pipe(prompt, negative, generator=torch.Generator().manual_seed(seed), **{**SIZE, **options}).frames.astype(int)


def test_the_directorys_scheduler_gives_diffusers_video_for_a_seed(wan_dir):
    for negative in ("", "dark room"):
        a, b = ours(wan_dir, negative=negative), reference(wan_dir, negative=negative)
        assert a.shape == b.shape == (1, 9, 32, 48, 3)
        assert np.abs(a - b).max() <= TOLERANCE
    assert np.abs(ours(wan_dir, seed=1) - ours(wan_dir)).max() > 20      # and the seed matters


def test_vidiffs_flow_euler_on_the_directorys_grid_equals_diffusers_flow_match_euler(wan_dir, tmp_path):
    pipe = WanPipeline.from_pretrained(str(wan_dir))
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    pipe.save_pretrained(str(tmp_path / "euler"))
    b = reference(tmp_path / "euler")
    assert np.abs(ours(tmp_path / "euler", sampler="flow-euler") - b).max() <= TOLERANCE
    for sampler, spacing in (("dpm++2m", "model"), ("flow-euler", "uniform"), ("heun", "karras")):
        video = ours(wan_dir, sampler=sampler, spacing=spacing)     # the same model, other solvers: close, not equal
        assert video.shape == b.shape and np.abs(video - b).mean() < 20


def test_cli_generate_with_a_diffusers_directory_and_a_non_square_size(wan_dir, tmp_path):
    run = lambda *args: subprocess.run([sys.executable, "-m", "vidiff", "generate", PROMPT, "--model", str(wan_dir),  # noqa: E731
                                        *args], capture_output=True, text=True, timeout=300)
    r = run("--size", "32x48", "--frames", "9", "--steps", "2", "--out", str(tmp_path / "w.mp4"), "--scale", "1")
    assert r.returncode == 0 and (tmp_path / "w.mp4").is_file(), r.stderr[-2000:]
    for args, message in ((["--size", "30x48"], "multiple of 16"), (["--frames", "8"], "1 + 4k frames"),
                          (["--image", str(tmp_path / "w.mp4")], "--image is for vidiff's own models"),
                          (["--sampler", "bogus"], "unknown sampler"), (["--offload", "gpu"], "unknown --offload")):
        r = run("--frames", "9", "--size", "32x48", *args, "--out", str(tmp_path / "x.mp4"))
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr[-1500:])


def broken_copy(wan_dir, tmp_path, edit) -> str:
    folder = tmp_path / "broken"
    shutil.copytree(wan_dir, folder)
    edit(folder)
    return folder


@pytest.mark.parametrize("edit, message", [
    (lambda f: (f / "model_index.json").write_text(json.dumps({**json.loads((f / "model_index.json").read_text()),
                                                               "_class_name": "CogVideoXPipeline"})),
     "holds a CogVideoXPipeline pipeline; vidiff runs these diffusers pipelines: WanPipeline"),
    (lambda f: shutil.rmtree(f / "vae"), "has no 'vae' component"),
    (lambda f: (f / "transformer" / "diffusion_pytorch_model.safetensors").unlink(), "has no weights file"),
])
def test_a_directory_vidiff_cannot_run_is_a_one_line_error(wan_dir, tmp_path, edit, message):
    with pytest.raises(VidiffError, match=message.replace("(", r"\(")):
        VideoPipeline.from_pretrained(broken_copy(wan_dir, tmp_path, edit))


def test_without_the_extra_a_diffusers_directory_names_it(wan_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)       # import diffusers -> ImportError
    with pytest.raises(VidiffError, match=r'pip install -e "\.\[diffusers\]"'):
        VideoPipeline.from_pretrained(wan_dir)


def test_a_prompt_over_the_text_encoders_length_is_truncated_with_a_warning(wan_dir):
    pipe = VideoPipeline.from_pretrained(wan_dir)
    pipe.progress = False
    with pytest.warns(UserWarning, match="reads the first 512"):
        pipe(" ".join(["red ball"] * 300), **{**SIZE, "num_inference_steps": 1})
