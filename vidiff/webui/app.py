"""The gradio Blocks app of `vidiff serve`: one tab per job, each with a named API endpoint
(/generate, /image_to_video, /extend, /interpolate, /evaluate, /run_info, /generate_from_checkpoint)
so scripts can call the server with gradio_client. Requests are queued with one worker (a CPU does
one sampling at a time well) and a bounded queue; a bad input is an error shown in the page."""
from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr

from ..diffusion import SAMPLERS, SPACINGS
from ..errors import VidiffError
from ..pipeline import METHODS
from .jobs import Jobs
from .limits import Limits

QUEUE = 16


def _shown(fn):
    """VidiffErrors as a message in the page (gr.Error); the next request works as usual."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VidiffError as e:
            raise gr.Error(str(e), print_exception=False) from None
    return run


def _results():
    with gr.Row():
        video = gr.Video(label="video", format=None, autoplay=True, loop=True, elem_id=None)
        sheet = gr.Image(label="contact sheet", type="filepath")
    gif = gr.File(label="GIF")
    return video, gif, sheet


def build_app(jobs: Jobs) -> gr.Blocks:
    methods = ["", *METHODS]
    with gr.Blocks(title="vidiff", analytics_enabled=False, delete_cache=(600, 3600)) as app:
        gr.Markdown("# vidiff\nText-to-video diffusion. Prompts use only the words the model was "
                    "trained on.")
        # custom values reach our own check (inside --runs), whose message says what is wrong, not gradio's
        model = gr.Dropdown(jobs.models(), value="default", label="model", elem_id="model", allow_custom_value=True)
        vocabulary = gr.Markdown(f"**Words this model knows:** {jobs.vocabulary()}", elem_id="vocabulary")
        first_steps, first_guidance, first_sampler, first_spacing, first_frames = jobs.defaults()

        with gr.Tab("Text → video", id="t2v"):
            prompt = gr.Textbox(label="prompt", value="a red circle and a blue square bouncing", elem_id="prompt")
            with gr.Row():
                seed = gr.Number(0, label="seed", precision=0)
                steps = gr.Number(first_steps, label="steps", precision=0)
                guidance = gr.Number(first_guidance, label="guidance")
                # empty: the model's own (an API call that leaves them out gets the model's, not the first model's)
                frames = gr.Number(0, label=f"frames (0: the model's {first_frames})", precision=0, elem_id="frames")
                size = gr.Textbox("", label="size HxW (empty: the model's)", placeholder=jobs.size(), elem_id="size")
                sampler = gr.Dropdown([*SAMPLERS, "scheduler"], value=first_sampler, label="sampler (scheduler: a diffusers directory's own)")
                spacing = gr.Dropdown([*SPACINGS, "model"], value=first_spacing, label="step spacing (model: the scheduler's own)")

            def picked(name):     # the vocabulary and sampling defaults follow the model
                s, g, sa, sp, f = jobs.defaults(name)
                return (f"**Words this model knows:** {jobs.vocabulary(name)}", s, g, sa, sp,
                        gr.update(label=f"frames (0: the model's {f})"), gr.update(value="", placeholder=jobs.size(name)))
            model.change(_shown(picked), model, [vocabulary, steps, guidance, sampler, spacing, frames, size],
                         api_name=False)
            go = gr.Button("Generate", variant="primary", elem_id="generate")
            video, gif, sheet = _results()

            def generate(prompt, model="default", seed=0, steps=None, guidance=None, frames=None, sampler=None,
                         spacing=None, size="", progress=gr.Progress(track_tqdm=True)):
                return jobs.generate(prompt, model, seed, _int(steps), guidance, _int(frames) or None, sampler or None,
                                     spacing or None, size or None)
            go.click(_shown(generate), [prompt, model, seed, steps, guidance, frames, sampler, spacing, size],
                     [video, gif, sheet], api_name="generate")

        with gr.Tab("Image → video", id="i2v"):
            with gr.Row():
                image = gr.Image(label="first frame", type="numpy", image_mode="RGB", elem_id="image")
                with gr.Column():
                    i_prompt = gr.Textbox(label="prompt", value="a red circle bouncing")
                    i_seed = gr.Number(0, label="seed", precision=0)
                    i_method = gr.Dropdown(methods, value="", label="method (empty: the best this model has)")
                    i_go = gr.Button("Animate", variant="primary", elem_id="animate")
            i_video, i_gif, i_sheet = _results()

            def image_to_video(image, prompt, model="default", seed=0, method="", progress=gr.Progress(track_tqdm=True)):
                return jobs.image_to_video(image, prompt, model, seed, None, method)
            i_go.click(_shown(image_to_video), [image, i_prompt, model, i_seed, i_method], [i_video, i_gif, i_sheet],
                       api_name="image_to_video")

        with gr.Tab("Extend", id="extend"):
            with gr.Row():
                e_input = gr.Video(label="video to continue", format=None)
                with gr.Column():
                    e_prompt = gr.Textbox(label="prompt", value="a red circle bouncing")
                    e_frames = gr.Number(48, label="frames in the result", precision=0)
                    e_seed = gr.Number(0, label="seed", precision=0)
                    e_method = gr.Dropdown(methods, value="", label="method (empty: the best this model has)")
                    e_mode = gr.Radio(["windows", "hierarchical"], value="windows", label="mode",
                                      info="hierarchical: keyframes first, then the frames between (a model trained "
                                           "with frame strides)")
                    e_go = gr.Button("Extend", variant="primary")
            e_video, e_gif, e_sheet = _results()

            def extend(video, prompt, frames=48, model="default", seed=0, method="", mode="windows",
                       progress=gr.Progress(track_tqdm=True)):
                return jobs.extend(video, prompt, _int(frames), model, seed, None, method, mode)
            e_go.click(_shown(extend), [e_input, e_prompt, e_frames, model, e_seed, e_method, e_mode],
                       [e_video, e_gif, e_sheet],
                       api_name="extend")

        with gr.Tab("Interpolate", id="interpolate"):
            with gr.Row():
                p_input = gr.Video(label="frames to interpolate between", format=None)
                with gr.Column():
                    p_factor = gr.Number(4, label="factor: N frames become (N - 1) x factor + 1", precision=0)
                    p_prompt = gr.Textbox(label="prompt (optional)", value="")
                    p_seed = gr.Number(0, label="seed", precision=0)
                    p_method = gr.Dropdown(methods, value="", label="method (empty: the best this model has)")
                    p_go = gr.Button("Interpolate", variant="primary")
            p_video, p_gif, p_sheet = _results()

            def interpolate(video, factor=4, prompt="", model="default", seed=0, method="",
                            progress=gr.Progress(track_tqdm=True)):
                return jobs.interpolate(video, _int(factor), prompt, model, seed, None, method)
            p_go.click(_shown(interpolate), [p_input, p_factor, p_prompt, model, p_seed, p_method],
                       [p_video, p_gif, p_sheet], api_name="interpolate")

        with gr.Tab("Evaluate", id="evaluate"):
            gr.Markdown("Upload videos (with one caption per line, in the same order) — or leave them out and "
                        "score samples of the model picked above.")
            with gr.Row():
                v_files = gr.File(label="videos", file_count="multiple")
                v_captions = gr.Textbox(label="captions", lines=4)
                v_num = gr.Number(8, label="samples (when scoring the model)", precision=0)
            v_go = gr.Button("Evaluate", variant="primary")
            v_report = gr.Markdown()
            with gr.Row():
                v_best = gr.Image(label="best and worst", type="filepath")
                v_plot = gr.Image(label="metrics", type="filepath")

            def evaluate(files=None, captions="", model="default", num=8, progress=gr.Progress(track_tqdm=True)):
                return jobs.evaluate(files, captions, None if files else model, _int(num) or 8)
            v_go.click(_shown(evaluate), [v_files, v_captions, model, v_num], [v_report, v_best, v_plot],
                       api_name="evaluate")

        with gr.Tab("Runs", id="runs"):
            runs = gr.Dropdown(jobs.run_names(), label="run folder", value=None, allow_custom_value=True)
            with gr.Row():
                r_loss = gr.Image(label="loss", type="filepath")
                r_samples = gr.Image(label="latest samples", type="filepath")
            r_config = gr.Code(label="config.json", language="json")
            r_checkpoint = gr.Dropdown([], label="checkpoint")
            r_prompt = gr.Textbox(label="prompt", value="a red circle bouncing")
            r_go = gr.Button("Generate from this checkpoint")
            r_video, r_gif, r_sheet = _results()

            def run_info(run):
                loss, samples, config, checkpoints = jobs.run_info(run)
                return loss, samples, config, gr.Dropdown(choices=checkpoints, value=checkpoints[-1] if checkpoints else None)
            runs.change(_shown(run_info), runs, [r_loss, r_samples, r_config, r_checkpoint], api_name="run_info")

            def from_checkpoint(run, checkpoint, prompt, progress=gr.Progress(track_tqdm=True)):
                return jobs.generate_from_checkpoint(run, checkpoint, prompt)
            r_go.click(_shown(from_checkpoint), [runs, r_checkpoint, r_prompt], [r_video, r_gif, r_sheet],
                       api_name="generate_from_checkpoint")
    app.queue(default_concurrency_limit=1, max_size=QUEUE)
    return app


def _int(value) -> int | None:
    return None if value is None or value == "" else int(value)


def serve(model: str | Path | None = None, runs: Path | None = None, host: str = "127.0.0.1", port: int = 7860,
          limits: Limits | None = None, block: bool = True, dtype: str | None = None, compile: bool = False):
    """Start the server; with block=False return (app, url) with it running in the background.
    dtype, compile: how every model is loaded (VideoPipeline.from_pretrained's torch_dtype and compile)."""
    jobs = Jobs(model, runs, limits, dtype=dtype, compile=compile)
    app = build_app(jobs)
    try:                # quiet: gradio's own banner suggests share=True, which a `vidiff serve` user cannot pass
        _, url, _ = app.launch(server_name=host, server_port=port, max_file_size=f"{jobs.limits.upload_mb:g}mb",
                               prevent_thread_lock=True, show_error=True, quiet=True, footer_links=["api"])
    except OSError as e:
        raise VidiffError(f"cannot listen on {host}:{port}: {str(e).split('. ')[0]} (another server there? "
                          "pass --port)") from None
    if block:
        print(f"vidiff serve: open {url} (Ctrl-C stops it)", flush=True)
        app.block_thread()
    return app, url
