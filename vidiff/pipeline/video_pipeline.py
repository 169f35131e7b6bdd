"""VideoPipeline: text-to-video, image-to-video, extension to any length, long video in one pass and
frame interpolation, for every model bundle (models/bundle.py): vidiff's own checkpoints and
diffusers-format open models alike. A masked-frame model conditions on given frames itself; any other
model through reconstruction guidance or replacement (`method`), on its latent frames."""
from __future__ import annotations

import sys
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..config import RECONSTRUCTION_WEIGHT
from ..checkpoint import (DEFAULT_MODEL, load_codec, load_model, load_open_run_backbone, open_run,
                          resolve_checkpoint)
from ..data.io import to_uint8
from ..data.worlds import world_of
from ..devices import allow_tf32, compile_module, resolve_dtype
from ..diffusion.conditioning import frame_mask
from ..errors import VidiffError
from ..models.bundle import Bundle
from ..models.external import is_open_model, load_open_bundle
from ..models.lora import load_lora, merge_lora, remove_lora
from ..models.own import own_bundle
from ..models.sequence_parallel import split_backbone
from .applies import check_call, check_sampling
from .call import Request, request
from .checks import (check_conditioning, check_device, check_guidance_scale, check_lora_scale, check_sample_options,
                     number, prompt_list, shown, whole)
from .context_windows import ContextWindows
from .inputs import FrameSource, as_frames, fit_frames, to_model_range
from .output import VideoPipelineOutput
from .sampling import (METHODS, FrameConditioning, KnownFrames, GridSpan, SampleOptions, device_of, grid_of,
                       sample_video, samplers_of, spacings_of)
from .windows import extension_plan, interpolation_plan
from .zero_shot import ZeroShot, cross_frame_attention, moving_start

MAX_SCALE = 256    # the largest window, in pixels x frames, as a multiple of the trained clip (16 frames -> 4,096)
MAX_EXTENDED_FRAMES = 10_000   # `extend` and long video: 20 minutes at 8 fps (10^8 frames started 8.3 million windows)
CPU_NOTICE_TOKENS = 4096     # transformer tokens a step above which a CPU run gets a one-line note

# offload model: each component on the device only while it runs (diffusers' enable_model_cpu_offload);
# text: the same, with the text encoder run on the host (Wan's --t5_cpu: its 5.7 B parameters never
# reach the device, the mode of Wan's own 8.19 GB figure for the 1.3B model)
OFFLOADS = ("none", "model", "text")
EXTEND_NAMES = ("negative_prompt", "height", "width", "output_type", "num_inference_steps", "guidance_scale")


def check_offload(offload) -> str:
    if offload not in OFFLOADS:
        raise VidiffError(f"unknown --offload {shown(offload)}; choose one of: {', '.join(OFFLOADS)}")
    return offload


class Job(NamedTuple):
    """What every window of an extension or interpolation is sampled with."""
    prompts: list[str]
    negative: str | None
    cond: tuple
    null: tuple
    options: SampleOptions     # resolved; its progress is the bar over the windows (each window's steps: none)
    generator: torch.Generator | None
    conditioning: FrameConditioning   # its method resolved
    size: tuple[int, int]      # (height, width) in pixels


class VideoPipeline:
    def __init__(self, bundle: Bundle, device: str | torch.device | None = None, offload: str = "none",
                 vae_tiling: bool = False):
        check_offload(offload)
        if offload != "none" and not bundle.offloadable:
            raise VidiffError("--offload is for models of separate components (diffusers-format directories); "
                              "this one fits on one device as a whole")
        self.bundle, self.offload, self.vae_tiling = bundle, offload, vae_tiling
        self.size = (bundle.defaults.frames, bundle.defaults.height, bundle.defaults.width)   # when a call gives none
        self.device = torch.device(device) if device is not None else device_of(bundle)
        for module in bundle.modules.values():
            module.to("cpu" if offload != "none" else self.device)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str | torch.device | None = None,
                        torch_dtype: str | torch.dtype | None = None, compile: bool = False, offload: str = "none",
                        vae_tiling: bool = False):
        """Load a checkpoint folder, a training run folder (its latest checkpoint, EMA weights), a
        diffusers-format model directory (model_index.json; Wan 2.1), or with no path (or `default`)
        the model embedded in the package.
        torch_dtype: bf16 / fp16 (or torch.bfloat16 / torch.float16) backbone weights, run under
        autocast (vidiff's text encoder and a diffusers VAE stay float32; the samplers' arithmetic is
        float64). compile: torch.compile the backbone (the first call compiles). offload "model": each
        component on the device only while it runs; "text": the text encoder also runs on the host.
        vae_tiling: decode in overlapping tiles (less memory, large frames)."""
        if path is not None and not isinstance(path, (str, Path)):
            raise VidiffError(f"the model must be a path (a checkpoint, run or diffusers-format folder) or None, "
                              f"got {shown(path)}")
        check_offload(offload)          # before minutes of loading
        dtype = resolve_dtype(torch_dtype)
        device = check_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        allow_tf32()
        run = open_run(path) if path is not None and not is_open_model(path) else None
        if path is not None and is_open_model(path):
            bundle = load_open_bundle(path, dtype)
        elif run is not None:          # a fine-tune of a diffusers-format model: the base plus its run's weights
            checkpoint, cfg = run
            bundle = load_open_bundle(cfg.model.pretrained, dtype, load_open_run_backbone(checkpoint, cfg, dtype))
        else:
            bundle = _own(path, device, dtype)
        pipe = cls(bundle, device, offload, vae_tiling)
        if compile:
            compile_module(bundle.backbone)
        return pipe

    # what the model is ----------------------------------------------------------------------------
    @property
    def config(self):
        """A vidiff model's Config (None for a diffusers-format model)."""
        return self.bundle.config

    @property
    def model(self):
        """A vidiff model's TextToVideoModel (None for a diffusers-format model)."""
        return self.bundle.model

    @property
    def window(self) -> int:
        """The clip length the model was trained on: the window of extension, interpolation and long video."""
        return self.bundle.defaults.frames

    def use_size(self, frames: int | None = None, height: int | None = None, width: int | None = None) -> None:
        """Make clips of this size when a call gives none (e.g. every sample of an evaluation)."""
        d = self.bundle.defaults
        frames, height, width = frames or d.frames, height or d.height, width or d.width
        self.check_size(frames, height, width)
        self.size = (frames, height, width)

    def default_method(self) -> str:
        return "trained" if self.bundle.frame_conditioning else "guidance"

    def defaults(self) -> SampleOptions:
        """The model's own sampling settings (its config's diffusion section, a family's pipeline's)."""
        return SampleOptions().resolved(self.bundle)

    def options(self, sampling: SampleOptions | None = None) -> SampleOptions:
        """The loop's options: what is given, the model's defaults for the rest, checked."""
        o = (sampling or SampleOptions()).resolved(self.bundle)
        o = check_sample_options(o, tuple(samplers_of(self.bundle)), spacings_of(self.bundle))
        if o.shift is not None:
            number(o.shift, "the schedule's shift (--shift)", 0.01, 100.0)
        if o.guidance_2 is not None:
            check_guidance_scale(o.guidance_2)
        check_sampling(o, self.bundle)
        return o

    # adapters and placement -------------------------------------------------------------------------
    def load_lora(self, path: str | Path, scale: float = 1.0, name: str | None = None, expert: int = 1) -> str:
        """Apply the LoRA adapter in `path` at `scale`, on top of any adapters already loaded; returns its
        name. Any format people download (lora_files: diffusers, peft, ComfyUI, musubi-tuner/kohya), a
        peft folder, or a LoRA run folder. expert 2: a two-expert model's second (low-noise) expert
        (diffusers' load_into_transformer_2). One made for another base model is a one-line error."""
        check_lora_scale(scale)
        path = Path(path)
        if path.is_dir() and not any((path / f).is_file() for f in ("lora.safetensors", "adapter_model.safetensors")):
            path = resolve_checkpoint(path)          # a LoRA run folder: its latest checkpoint's adapter
        return load_lora(self._lora_target(expert), path, scale, name, self.bundle.lora_names)

    def _lora_target(self, expert: int):
        b = self.bundle
        if expert == 2 and b.lora_target_2 is None:
            raise VidiffError("--lora-2 (expert=2) adapts a two-expert model's second expert; this model has one")
        if expert not in (1, 2):
            raise VidiffError(f"expert must be 1 or 2, got {shown(expert)}")
        return b.lora_target_2 if expert == 2 else b.lora_target or b.backbone

    def unload_lora(self, name: str | None = None, expert: int = 1) -> int:
        """Remove the adapter `name` (None: all of them; diffusers' unload_lora_weights)."""
        return remove_lora(self._lora_target(expert), name)

    def merge_lora(self) -> int:
        """Fold the loaded adapters into the weights (diffusers' fuse_lora): the same videos, no
        adapter cost per step. Returns the number of layers changed."""
        b = self.bundle
        return merge_lora(b.lora_target or b.backbone) + (merge_lora(b.lora_target_2) if b.lora_target_2 else 0)

    def split_sequences(self, group) -> None:
        """Sequence parallelism for sampling under torchrun: every process makes the same video, each
        holding 1/N of a clip's DiT tokens, so a window of N times more frames fits. `group`: a
        SequenceGroup (models.sequence_parallel.sequence_group())."""
        split_backbone(self.bundle.backbone, group)

    @contextmanager
    def placed(self, role: str):
        """The component `role` (text, backbone, codec) on the device for the duration, offloaded: back
        to the host after. With offload "text" the text encoder stays on the host."""
        module = self.bundle.modules.get(role)
        moves = module is not None and (self.offload == "model" or (self.offload == "text" and role != "text"))
        stream = moves and self.offload == "model" and hasattr(module, "stream_to")   # experts: one at a time
        if stream:
            module.stream_to(self.device)
        elif moves:
            module.to(self.device)
        try:
            yield
        finally:
            if stream:
                module.stream_to(None)
            elif moves:
                module.to("cpu")
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()

    # checks -----------------------------------------------------------------------------------------
    def check_size(self, frames: int, height: int, width: int) -> None:
        """One-line errors for clip sizes this model cannot make (in pixels; latent models' VAE included)."""
        codec, (pt, ph, pw), d = self.bundle.codec, self.bundle.multiples, self.bundle.defaults
        step = codec.time_factor * pt
        ok = frames >= 1 and ((frames - 1) % step == 0 if codec.time_factor > 1 else frames % pt == 0)
        if not ok:
            form = f"1 + {step}k frames" if codec.time_factor > 1 else f"a multiple of {pt} frames"
            raise VidiffError(f"cannot make {frames} frames: this model makes {form} (--frames; e.g. {d.frames})")
        fh, fw = codec.spatial_factor * ph, codec.spatial_factor * pw
        if height < fh or width < fw or height % fh or width % fw:
            need = f"--size a multiple of {fh}" if fh == fw else f"--size HxW, H a multiple of {fh} and W of {fw}"
            raise VidiffError(f"cannot make frames of {height}x{width}: this model needs {need} (e.g. "
                              f"{d.height}x{d.width})")

    def check_window(self, frames: int, height: int, width: int) -> None:
        """What one window holds must fit the model: its position tables, and a size near the trained one
        (memory grows with it, and the model makes nothing useful far beyond; --size 2048 took 13 GB on
        the embedded model)."""
        b = self.bundle
        latent = b.codec.shape(frames, height, width)
        grid = (latent[1] // b.multiples[0], latent[2] // b.multiples[1], latent[3] // b.multiples[2])
        if b.max_patches is not None and max(grid[1:]) > b.max_patches:
            raise VidiffError(f"frames of {height}x{width} are {grid[1]}x{grid[2]} patches; this model's position "
                              f"tables cover {b.max_patches} along each axis")
        if b.trained_size is not None:
            f, h, w = b.trained_size
            ratio = frames * height * width / (f * h * w)
            if ratio > MAX_SCALE:
                raise VidiffError(f"a clip of {frames}x{height}x{width} is {ratio:.0f} times the {f}x{h}x{w} this model "
                                  f"was trained on (at most {MAX_SCALE}x); for a long video use more --frames, which "
                                  "run in windows, or `vidiff extend`")

    def check_stride(self, stride: int) -> None:
        if stride not in self.bundle.strides:
            raise VidiffError(f"this model makes clips at frame strides {', '.join(map(str, self.bundle.strides))} "
                              f"(data.shapes.strides), not {stride}")

    def _conditioning(self, conditioning: FrameConditioning | None) -> FrameConditioning:
        """How given frames condition the video: the method asked for, checked, or the model's best."""
        c = check_conditioning(conditioning or FrameConditioning(), METHODS)
        method = c.method or self.default_method()
        if method == "trained" and not self.bundle.frame_conditioning:
            raise VidiffError("this model was not trained with frame masks (model.frame_conditioning); "
                              "use --method guidance or --method replacement")
        if c.history not in (None, 1.0) and method != "trained":
            raise VidiffError("history guidance (--history-guidance) needs the trained method (a masked-frame model)")
        history = (self.bundle.history_guidance if method == "trained" else 1.0) if c.history is None else c.history
        return replace(c, method=method, history=history, weight=RECONSTRUCTION_WEIGHT if c.weight is None else c.weight)

    def _windows(self, frames: int, windows: ContextWindows | None) -> tuple[int, int] | None:
        """(length, overlap) in the model's frames for a clip longer than its native length, else None."""
        codec, native = self.bundle.codec, self.bundle.codec.latent_frames(self.window)
        latent = codec.latent_frames(frames)
        w = windows or ContextWindows()
        length = native if w.length is None else whole(w.length, "the context window length", 1)
        if windows is None and (latent <= length or native == 1):   # an image model's frames: one pass, as inflated
            return None
        overlap = max(1, length // 4) if w.overlap is None else whole(w.overlap, "the context windows' overlap", 0)
        if not 0 <= overlap < length:
            raise VidiffError(f"the context windows' overlap must be 0 to {length - 1} frames, got {overlap}")
        return length, overlap

    # prompts and frames -----------------------------------------------------------------------------
    def _prompts(self, prompt) -> list[str]:
        prompts = prompt_list(prompt)
        self.bundle.check_prompts(prompts)
        return prompts

    def encode_prompt(self, prompt: str | list[str], negative_prompt: str | None = None, stride: int = 1):
        """(cond, null): the prompts' encoded states and the negative prompt's (default: the model's
        own, usually the empty prompt), on the device, as sample_video takes them."""
        return self._encode(self._prompts(prompt), negative_prompt, True, stride)

    def _encode(self, prompts: list[str], negative: str | None, guided: bool, stride: int = 1):
        """(cond, null) on the device: the prompts' states, and the negative (default: the model's own,
        often empty) prompt's where guidance needs them."""
        negative = self.bundle.defaults.negative_prompt if negative is None else negative
        with self.placed("text"):
            cond = self.bundle.encode(prompts, stride)
            null = self.bundle.encode([negative] * len(prompts), stride) if guided else cond
        move = lambda states: tuple(s.to(self.device) for s in states)    # noqa: E731
        return move(cond), move(null)

    def _fit(self, source: FrameSource, what: str, height: int, width: int) -> np.ndarray:
        return fit_frames(as_frames(source, what), height, width, what)

    def _encode_frames(self, frames: np.ndarray) -> Tensor:
        """uint8 (T, H, W, 3) -> the model's space (1, C, T', h, w)."""
        with self.placed("codec"):
            return self.bundle.codec.encode(to_model_range(frames).to(self.device)).to(self.device)

    def _decode(self, x: Tensor, progress: bool = False) -> np.ndarray:
        with self.placed("codec"):
            return to_uint8(self.bundle.codec.decode(x, progress=progress, tiled=self.vae_tiling))

    def _sample(self, job: Job, shape, known: KnownFrames | None = None, span: GridSpan | None = None,
                windows: tuple[int, int] | None = None, options: SampleOptions | None = None) -> Tensor:
        with self.placed("backbone"):
            return sample_video(self.bundle, job.cond, job.null, shape, options or job.options, job.generator,
                                known=known, span=span, windows=windows)

    # text-to-video and image-to-video -----------------------------------------------------------------
    def __call__(self, prompt: str | list[str], *, sampling: SampleOptions | None = None,
                 image: FrameSource | None = None, conditioning: FrameConditioning | None = None,
                 zero_shot: ZeroShot | None = None, **call) -> VideoPipelineOutput:
        """Text-to-video; with `image`, image-to-video: the image, fitted to the frame size, is the
        first frame of every video, conditioning the rest as `conditioning` says (a model without frame
        masks: reconstruction guidance on its first latent frame). A clip longer than the model's native
        length runs in context windows (`context_windows=ContextWindows(length, overlap)`).

        Keyword arguments as diffusers names them: negative_prompt, num_frames, height, width,
        generator, num_videos_per_prompt, num_inference_steps, guidance_scale (1 or less: no guidance),
        output_type ("np" floats in [0, 1], "uint8", "pil", "latent"); and stride (make every stride-th
        frame, a model trained with data.shapes.strides). sampling: steps, guidance, sampler, ...
        (unset: the model's own). zero_shot: video from an image model (Text2Video-Zero). generator:
        a CPU generator gives the same video on any device."""
        r = request(call, sampling)
        prompts = self._prompts(prompt) * r.videos_per_prompt
        options = self.options(r.sampling)
        f, h, w = self.size
        frames, height, width = (f if r.num_frames is None else r.num_frames, h if r.height is None else r.height,
                                 w if r.width is None else r.width)
        if zero_shot is not None:
            for v in zero_shot.motion:
                number(v, "the motion (--motion DX,DY) in pixels a frame", -max(height, width), max(height, width))
        self.check_size(frames, height, width)
        if frames > MAX_EXTENDED_FRAMES:
            raise VidiffError(f"--frames must be at most {MAX_EXTENDED_FRAMES}, got {frames}")
        windows = self._windows(frames, r.windows) if zero_shot is None or r.windows is not None else None
        self.check_window(self.bundle.codec.pixel_frames(windows[0]) if windows else frames, height, width)
        self.check_stride(r.stride)
        given_conditioning, conditioning = conditioning, self._conditioning(conditioning)   # checked even unused
        check_call(given_conditioning, conditioning.method, image is not None,   # an overlap for the native windows
                   r.windows is not None and r.windows.length is None,
                   windows is not None and self.bundle.codec.latent_frames(frames) > windows[0],
                   self.window, r.negative_prompt is not None, options.guided)
        if zero_shot is not None and windows is not None:
            raise VidiffError("zero-shot video makes one window; ask for at most the model's "
                              f"{self.window} frames")
        given = self._fit(image, "the image", height, width)[:1] if image is not None else None
        self._notice(frames, height, width, options)
        cond, null = self._encode(prompts, r.negative_prompt, options.guided, r.stride)
        job = Job(prompts, r.negative_prompt, cond, null, options, r.generator, conditioning, (height, width))
        shape = self.bundle.codec.shape(frames, height, width)
        known = None
        if given is not None:
            first = self._encode_frames(given)[:, :, :1].expand(len(prompts), -1, -1, -1, -1)
            latents = torch.zeros(len(prompts), *shape, device=self.device)
            latents[:, :, :1] = first
            known = KnownFrames(latents, frame_mask("first", shape[1]), conditioning.method, conditioning.weight,
                                conditioning.history)
        with cross_frame_attention(self.bundle.backbone) if zero_shot is not None else nullcontext():
            span = self._zero_shot_start(job, shape, zero_shot) if zero_shot is not None else None
            x = self._sample(job, shape, known, span, windows)
        if r.output_type == "latent":
            return VideoPipelineOutput(None, prompts, "latent", x, self.bundle.defaults.fps)
        out = self._decode(x, progress=options.progress and frames > 4 * self.window)   # long clips: a bar
        if given is not None:
            out[:, 0] = given[0]          # the user's image, not its VAE reconstruction
        return VideoPipelineOutput(out, prompts, r.output_type, fps=self.bundle.defaults.fps)

    def _notice(self, frames: int, height: int, width: int, o: SampleOptions) -> None:
        """One line before a clip that takes a CPU minutes a step (Wan's default size: about half a minute
        a step on 2 cores), so a long silent bar is not the first thing a user learns."""
        c, t, h, w = self.bundle.codec.shape(frames, height, width)
        pt, ph, pw = self.bundle.multiples
        tokens = (t // pt) * (h // ph) * (w // pw)
        if self.device.type == "cpu" and tokens > CPU_NOTICE_TOKENS and o.progress:
            print(f"note: {frames} frames of {height}x{width}, {o.steps} steps, on the CPU ({tokens} tokens a "
                  "step): this model expects a GPU; --frames, --size and --steps make it smaller", file=sys.stderr)

    def _zero_shot_start(self, job: Job, shape, zero_shot: ZeroShot) -> GridSpan:
        """Text2Video-Zero's start: frame 0 denoised alone, moved by the motion (zero_shot.py)."""
        o = job.options
        factor = self.bundle.codec.spatial_factor
        grid = grid_of(self.bundle, o.steps, o.spacing, o.shift)
        first_stage = replace(o, sampler="ddim", progress=False, callback=None)
        sample = lambda shape, span: self._sample(job, shape, span=span, options=first_stage)   # noqa: E731
        dx, dy = zero_shot.motion
        return GridSpan(*moving_start(sample, job.cond[0].shape[0], shape, grid, (dx / factor, dy / factor),
                                      job.generator))

    # frames given: extension and interpolation -------------------------------------------------------
    def _job(self, prompts: list[str], r: Request, conditioning: FrameConditioning | None, generator,
             guidance: float | None = None) -> Job:
        options = self.options(r.sampling)
        if guidance is not None:
            options = replace(options, guidance=guidance)
        d = self.bundle.defaults
        size = (d.height if r.height is None else r.height, d.width if r.width is None else r.width)
        self.check_size(self.window, *size)
        self.check_window(self.window, *size)
        resolved = self._conditioning(conditioning)
        check_call(conditioning, resolved.method, True, False, False, self.window, r.negative_prompt is not None,
                   options.guided)
        cond, null = self._encode(prompts, r.negative_prompt, options.guided)
        return Job(prompts, r.negative_prompt, cond, null, options, generator, resolved, size)

    def _window(self, job: Job, known: Tensor, mask: Tensor, stride: int = 1) -> Tensor:
        """One native-length window with the frames in `mask` given (model space); returns model space."""
        c = job.conditioning
        shape = self.bundle.codec.shape(self.window, *job.size)
        options = replace(job.options, progress=False)
        known = KnownFrames(known, mask, c.method, c.weight, c.history)
        if stride != 1:      # a stride-conditioned model's keyframes: the prompt encoded at that stride
            job = job._replace(**dict(zip(("cond", "null"), self._encode(job.prompts, job.negative, options.guided,
                                                                       stride))))
        return self._sample(job, shape, known, options=options)

    def extend(self, video: FrameSource, prompt: str, num_frames: int, generator: torch.Generator | None = None,
               sampling: SampleOptions | None = None, conditioning: FrameConditioning | None = None,
               context: int | None = None, mode: str = "windows", stride: int | None = None, **call) -> VideoPipelineOutput:
        """Continue `video` to num_frames frames (sampling.progress: a bar over the windows).

        mode "windows": windows of the native length, each conditioned on the last `context` frames
        made so far (default a quarter of the window, at least 2, so velocity carries across the seam),
        in the model's frames: a latent model's latent frames, re-encoded from the pixels where its
        VAE packs several frames into one.
        mode "hierarchical" (NUWA-XL-like; a model trained with frame strides): first keyframes every
        `stride` frames over the whole length (default the largest trained stride), continued from the
        video's own frames at that stride, then the frames between them by interpolation.
        call: diffusers' names for the size and sampling (height, width, negative_prompt, ...).
        Memory is one window's, whatever the length: each window is decoded as soon as it is made, and
        the frames are kept as uint8."""
        r = request(call, sampling, EXTEND_NAMES)
        prompts = self._prompts(prompt)
        whole(num_frames, "num_frames (--frames)", 1, MAX_EXTENDED_FRAMES)
        job = self._job(prompts, replace(r, generator=generator), conditioning, generator)
        given = self._fit(video, "the video", *job.size)
        if mode == "windows":
            return self._output(self._continue(given, num_frames, context, 1, job)[None], prompts, r)
        if mode != "hierarchical":
            raise VidiffError(f"unknown extension mode (--mode) '{mode}'; choose one of: windows, hierarchical")
        stride = max(self.bundle.strides) if stride is None else stride
        self.check_stride(stride)
        if stride == 1:
            raise VidiffError("hierarchical extension needs a model trained with frame strides above 1 "
                              "(data.shapes.strides, model.stride_conditioning); use --mode windows")
        if num_frames <= len(given):
            raise VidiffError(f"the video already has {len(given)} frames; ask for more (--frames > {len(given)})")
        keys = given[::-1][::stride][::-1]              # every stride-th frame, ending at the last one
        new_keys = -(-(num_frames - len(given)) // stride)
        context = None if context is None else min(context, len(keys))
        keys = self._continue(keys, len(keys) + new_keys, context, stride, job)
        filled = self._fill(keys[-new_keys - 1:], stride, job)
        return self._output(np.concatenate([given, filled[1:]])[:num_frames][None], prompts, r)

    def _output(self, frames: np.ndarray, prompts: list[str], r: Request) -> VideoPipelineOutput:
        if r.output_type == "latent":
            raise VidiffError("extension and interpolation return frames; use output_type 'np', 'uint8' or 'pil'")
        return VideoPipelineOutput(frames, prompts, r.output_type, fps=self.bundle.defaults.fps)

    def _continue(self, given: np.ndarray, num_frames: int, context: int | None, stride: int, job: Job) -> np.ndarray:
        """(num_frames, H, W, 3) uint8: `given` and the frames that continue it, window by window."""
        codec = self.bundle.codec
        window = codec.latent_frames(self.window)                    # in the model's frames
        have = codec.latent_frames(len(given))
        if context is not None and context > len(given):
            raise VidiffError(f"--context {context} needs at least {context} frames in the video, it has {len(given)}")
        context = min(max(2, window // 4), have) if context is None else codec.latent_frames(context)
        if num_frames <= len(given):
            raise VidiffError(f"the video already has {len(given)} frames; ask for more (--frames > {len(given)})")
        plan = extension_plan(have, have + -(-(num_frames - len(given)) // codec.time_factor), window, context)
        frames = [given]
        last = self._encode_frames(given[-codec.pixel_frames(context):])             # (1, C, context, h, w)
        mask = frame_mask("first_k", window, context)
        for new in tqdm(plan, desc="windows" if stride == 1 else f"keyframes (stride {stride})",
                        disable=not job.options.progress, leave=False):
            known = torch.zeros(1, last.shape[1], window, *last.shape[3:], device=self.device)
            known[:, :, :context] = last
            x = self._window(job, known, mask, stride)
            pixels = self._decode(x)[0]          # decoded with its context frames before them
            start = codec.pixel_frames(context)
            end = codec.pixel_frames(context + new)
            frames.append(pixels[start:end])
            if codec.time_factor > 1:     # packed latents: the context is re-encoded as a clip of its own
                last = self._encode_frames(np.concatenate(frames)[-codec.pixel_frames(context):])
            else:
                last = x[:, :, new:context + new]
        return np.concatenate(frames)[:num_frames]

    def interpolate(self, video: FrameSource, factor: int, prompt: str | None = None,
                    generator: torch.Generator | None = None, sampling: SampleOptions | None = None,
                    conditioning: FrameConditioning | None = None, **call) -> VideoPipelineOutput:
        """N frames in, (N - 1) * factor + 1 out: `factor - 1` new frames between each pair, the given
        frames kept exactly. Without a prompt, a model of the shapes world is told what the frames show
        (their objects, found as the evaluation finds them); any other model is unconditional on text
        (guidance off). A model whose VAE packs several frames into one latent frame cannot hold a
        single given frame in the middle of a clip: a one-line error."""
        r = request(call, sampling, EXTEND_NAMES)
        whole(factor, "the interpolation factor (--factor)", 2, 64)
        tf = self.bundle.codec.time_factor
        if tf > 1:
            raise VidiffError(f"interpolation needs a codec that encodes every frame alone; this model's VAE packs "
                              f"{tf} frames into each latent frame after the first, so a given frame cannot be held "
                              "between new ones (use extend, or generate with --image)")
        size = (r.height or self.bundle.defaults.height, r.width or self.bundle.defaults.width)
        given = self._fit(video, "the video", *size)
        if prompt is None:
            prompt = self.bundle.describe(given)
        prompts = self._prompts(prompt) if prompt is not None else [""]
        job = self._job(prompts, replace(r, generator=generator), conditioning, generator,
                        guidance=1.0 if prompt is None else None)
        return self._output(self._fill(given, factor, job)[None], prompts, r)

    def _fill(self, given: np.ndarray, factor: int, job: Job) -> np.ndarray:
        """((N - 1) * factor + 1, H, W, 3) uint8: the N given frames `factor` apart, and frames between."""
        window = self.window
        plan = interpolation_plan(len(given), factor, window)
        keys = self._encode_frames(given)     # (1, C, N, h, w)
        frames = np.zeros(((len(given) - 1) * factor + 1, *job.size, 3), dtype=np.uint8)
        for start, held in tqdm(plan, desc="windows", disable=not job.options.progress, leave=False):
            mask = torch.zeros(window, dtype=torch.bool)
            known = torch.zeros(1, keys.shape[1], window, *keys.shape[3:], device=self.device)
            for j in held:
                mask[(j - held[0]) * factor] = True
                known[:, :, (j - held[0]) * factor] = keys[:, :, j]
            x = self._window(job, known, mask)
            span = (held[-1] - held[0]) * factor + 1
            frames[start:start + span] = self._decode(x)[0, :span]
        frames[::factor] = given                  # the given frames, not their VAE reconstructions
        return frames


def _own(path, device: torch.device, dtype: torch.dtype) -> Bundle:
    """A vidiff checkpoint, run folder or the embedded model as a bundle on `device`."""
    model, config, folder = load_model(DEFAULT_MODEL if path is None else path)
    codec = load_codec(folder, device)
    if codec.vae is not None:
        codec.vae.to(dtype)
    model.eval().to(device, dtype)
    # the text encoder runs once per prompt: in bf16 its weights lost an object in 1 of 8 clips of the
    # embedded model (a word's embedding is the whole binding of colour to shape), in float32 none
    model.text_encoder.float()
    if model.stride_embed is not None:
        model.stride_embed.float()
    name = "the embedded model" if path in (None, "default") else str(path)
    return own_bundle(model, config, codec, name, world_of(config.data))
