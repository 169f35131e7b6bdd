"""VideoPipeline: text-to-video, image-to-video, extension to any length, and frame interpolation,
with one model (a masked-frame model does all four itself; any other model through reconstruction
guidance or replacement, `method`)."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..checkpoint import DEFAULT_MODEL, load_codec, load_model, resolve_checkpoint
from ..config import Config
from ..data.io import to_uint8
from ..data.worlds import world_of
from ..devices import allow_tf32, compile_module, resolve_dtype
from ..diffusion import schedule_of, sampling_grid
from ..diffusion.conditioning import frame_mask
from ..errors import VidiffError
from ..models import LatentCodec, TextToVideoModel, input_multiples
from ..models.external import is_open_model
from ..models.lora import load_lora, merge_lora
from ..models.sequence_parallel import split_backbone
from ..models.vae import latent_frames
from .checks import (check_conditioning, check_device, check_generator, check_lora_scale, check_sample_options, number,
                     prompt_list, sampling_group, shown, whole)
from .output import VideoPipelineOutput
from .inputs import FrameSource, as_frames, fit_frames, to_model_range
from .sampling import METHODS, FrameConditioning, GridSpan, KnownFrames, SampleOptions, sample_video
from .windows import extension_plan, interpolation_plan
from .zero_shot import ZeroShot, cross_frame_attention, moving_start


MAX_SCALE = 256    # the largest clip, in pixels x frames, as a multiple of the trained clip (16 frames -> 4,096)
MAX_EXTENDED_FRAMES = 10_000   # `extend`: 20 minutes at 8 fps (10^8 frames started 8.3 million windows)


class Windows(NamedTuple):
    """What every window of an extension or interpolation is sampled with."""
    ids: Tensor
    options: SampleOptions     # resolved; its progress is the bar over the windows (each window's steps: none)
    generator: torch.Generator | None
    conditioning: FrameConditioning   # its method resolved


class VideoPipeline:
    def __init__(self, model: TextToVideoModel, config: Config, codec: LatentCodec | None = None):
        self.model, self.config, self.codec = model.eval(), config, codec or LatentCodec()
        self.world = world_of(config.data)       # what the training data's world knows of prompts and frames

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str | torch.device | None = None,
                        torch_dtype: str | torch.dtype | None = None, compile: bool = False, offload: str = "none"):
        """Load a checkpoint folder, a training run folder (its latest checkpoint, EMA weights), or
        with no path (or `default`) the model embedded in the package. A diffusers-format directory
        (model_index.json; Wan 2.1) gives an OpenVideoPipeline (pipeline/open_model.py), where
        offload "model" keeps each component on the device only while it runs.
        torch_dtype: bf16 / fp16 (or torch.bfloat16 / torch.float16) backbone and VAE weights, run under
        autocast; the text encoder stays float32 and the samplers' arithmetic float64. compile: torch.compile the backbone (the first call compiles)."""
        if path is not None and not isinstance(path, (str, Path)):
            raise VidiffError(f"the model must be a path (a checkpoint, run or diffusers-format folder) or None, "
                              f"got {shown(path)}")
        if path is not None and is_open_model(path):
            from .open_model import OpenVideoPipeline
            return OpenVideoPipeline.from_pretrained(path, device, torch_dtype, offload)
        if offload != "none":
            raise VidiffError("--offload is for diffusers-format models; vidiff's own models fit on one device")
        dtype = resolve_dtype(torch_dtype)
        device = check_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, config, folder = load_model(DEFAULT_MODEL if path is None else path)
        allow_tf32()
        codec = load_codec(folder, device)
        if codec.vae is not None:
            codec.vae.to(dtype)
        model.to(device, dtype)
        # the text encoder runs once per prompt: in bf16 its weights lost an object in 1 of 8 clips of the
        # embedded model (a word's embedding is the whole binding of colour to shape), in float32 none
        model.text_encoder.float()
        if model.stride_embed is not None:
            model.stride_embed.float()
        pipe = cls(model, config, codec)
        if compile:
            compile_module(pipe.model.backbone)
        return pipe

    def load_lora(self, path: str | Path, scale: float = 1.0, name: str | None = None) -> str:
        """Apply the LoRA adapter in `path` (a lora.safetensors file, or a folder holding one) at `scale`,
        on top of any adapters already loaded; returns its name. One made for another base model is a
        one-line error. `vidiff generate --lora PATH --lora-scale S`."""
        check_lora_scale(scale)
        path = Path(path)
        if path.is_dir() and not (path / "lora.safetensors").is_file():
            path = resolve_checkpoint(path)          # a LoRA run folder: its latest checkpoint's adapter
        return load_lora(self.model, path, scale, name)

    def split_sequences(self, group) -> None:
        """Sequence parallelism for sampling under torchrun: every process makes the same video, each
        holding 1/N of a clip's DiT tokens (frames split; models/sequence_parallel.py), so a window of
        N times more frames fits. `group`: a SequenceGroup (models.sequence_parallel.sequence_group())."""
        split_backbone(self.model.backbone, group)

    def merge_lora(self) -> int:
        """Fold the loaded adapters into the weights (diffusers' fuse_lora): the same videos, no
        adapter cost per step. Returns the number of layers changed."""
        return merge_lora(self.model)

    @property
    def window(self) -> int:
        """The clip length the model was trained on: the window of extension and interpolation."""
        return self.config.data.frames

    def default_method(self) -> str:
        return "trained" if self.model.frame_conditioning else "guidance"

    def check_size(self, frames: int, height: int, width: int) -> None:
        """One-line errors for clip sizes this model cannot make (in pixels, for pixel and latent models)."""
        data = self.config.data
        if frames < 1:
            raise VidiffError(f"cannot make {frames} frames: this model needs --frames >= 1 (it was trained at {data.frames})")
        tf, factor = input_multiples(self.config.model)
        vae = self.codec.vae
        if vae is not None:      # the VAE's compression times the backbone's
            factor *= vae.spatial_factor
            td = vae.time_factor
            if latent_frames(frames, td) is None or latent_frames(frames, td) % tf:
                raise VidiffError(f"cannot make {frames} frames with this latent model: use 1 + {td * tf}k frames "
                                  f"(--frames; it was trained at {data.frames})")
        elif frames % tf:
            raise VidiffError(f"cannot make {frames} frames: this model needs --frames >= 1 and a multiple of {tf} "
                              f"(it was trained at {data.frames})")
        if height < factor or width < factor or height % factor or width % factor:
            raise VidiffError(f"cannot make frames of {height}x{width}: this model needs --size a multiple of "
                              f"{factor} (it was trained at {data.size})")

    def check_scale(self, frames: int, height: int, width: int) -> None:
        """Refuse a clip far beyond what the model was trained on: memory grows with it (--size 2048 took
        13 GB on the embedded model), and the model makes nothing useful there. Longer videos: extend."""
        data = self.config.data
        ratio = frames * height * width / (data.frames * data.size ** 2)
        if ratio > MAX_SCALE:
            raise VidiffError(f"a clip of {frames}x{height}x{width} is {ratio:.0f} times the {data.frames}x{data.size}x"
                              f"{data.size} this model was trained on (at most {MAX_SCALE}x); for a long video use "
                              "`vidiff extend`")

    def trained_strides(self) -> list[int]:
        return self.config.trained_strides() if self.model.stride_embed is not None else [1]

    def check_stride(self, stride: int) -> None:
        strides = self.trained_strides()
        if stride not in strides:
            raise VidiffError(f"this model makes clips at frame strides {', '.join(map(str, strides))} "
                              f"(data.shapes.strides), not {stride}")

    def defaults(self) -> SampleOptions:
        """The model's own sampling settings (its config's diffusion section; a distilled student's)."""
        return SampleOptions().resolved(self.config.diffusion)

    def options(self, sampling: SampleOptions | None = None) -> SampleOptions:
        """The loop's options: what is given, the model's defaults for the rest, checked."""
        return check_sample_options(sampling_group(sampling).resolved(self.config.diffusion))

    def _conditioning(self, conditioning: FrameConditioning | None) -> FrameConditioning:
        """How given frames condition the video: the method asked for, checked, or the model's best."""
        c = check_conditioning(conditioning or FrameConditioning(), METHODS)
        method = c.method or self.default_method()
        if method == "trained" and not self.model.frame_conditioning:
            raise VidiffError("this model was not trained with frame masks (model.frame_conditioning); "
                              "use --method guidance or --method replacement")
        if c.history not in (None, 1.0) and method != "trained":
            raise VidiffError("history guidance (--history-guidance) needs the trained method (a masked-frame model)")
        own = self.config.diffusion.history_guidance if method == "trained" else 1.0
        history = own if c.history is None else c.history
        return replace(c, method=method, history=history)

    def _encode_frames(self, pixels: Tensor) -> Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> model space, each frame encoded on its own as an image (with
        the causal VAE, exactly as frame 0 of a clip), as known frames are wherever they sit."""
        if not self.codec.latent:
            return pixels
        if self.codec.vae.time_factor > 1:
            raise VidiffError(f"conditioning on frames needs a VAE without temporal compression; this model's packs "
                              f"{self.codec.vae.time_factor} frames into a latent frame")
        b, _, t = pixels.shape[:3]
        z = self.codec.encode(pixels.transpose(1, 2).flatten(0, 1)[:, :, None])   # (B*T, C, 1, h, w)
        return z[:, :, 0].unflatten(0, (b, t)).transpose(1, 2)

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _fit(self, source: FrameSource, what: str, size: int) -> np.ndarray:
        return fit_frames(as_frames(source, what), size, what)

    def __call__(self, prompt: str | list[str], num_frames: int | None = None, height: int | None = None,
                 width: int | None = None, generator: torch.Generator | None = None,
                 sampling: SampleOptions | None = None, image: FrameSource | None = None,
                 conditioning: FrameConditioning | None = None, zero_shot: ZeroShot | None = None,
                 stride: int = 1) -> VideoPipelineOutput:
        """Text-to-video; with `image`, image-to-video: the image is the first frame of every video,
        conditioning the video as `conditioning` says. sampling: steps, guidance, sampler, ... (unset:
        the model's own). zero_shot: video from an image model (Text2Video-Zero): frame 0's partly
        denoised latent moves by its `motion` (dx, dy) pixels a frame, and each frame attends to frame 0.
        stride: make every stride-th frame of the video (a model trained with data.shapes.strides), e.g.
        the keyframes of a long one. generator: a CPU generator (the same video on any device) or one on
        the model's device."""
        prompts = self._prompts(prompt)
        options = self.options(sampling)
        check_generator(generator)
        data = self.config.data
        frames = whole(data.frames if num_frames is None else num_frames, "num_frames (--frames)")
        height = whole(data.size if height is None else height, "height (--size)")
        width = whole(data.size if width is None else width, "width (--size)")
        whole(stride, "the frame stride (--stride)")
        if zero_shot is not None:
            for v in zero_shot.motion:
                number(v, "the motion (--motion DX,DY) in pixels a frame", -max(height, width), max(height, width))
        self.check_size(frames, height, width)
        self.check_scale(frames, height, width)
        self.check_stride(stride)
        ids = self.model.tokenizer.encode(prompts)
        shape = self.codec.shape(self.config.model.in_channels, frames, height, width)
        known = given = None
        conditioning = self._conditioning(conditioning)    # checked even where no frames are given
        if image is not None:
            if height != width:
                raise VidiffError(f"image-to-video makes square frames; got --size {height}x{width}")
            given = self._fit(image, "the image", height)[:1]
            pixels = torch.zeros(1, 3, frames, height, width)
            pixels[:, :, 0] = to_model_range(given)[:, :, 0]
            encoded = self._encode_frames(pixels.to(self._device())).expand(len(prompts), -1, -1, -1, -1)
            known = KnownFrames(encoded, frame_mask("first", shape[1]), conditioning.method, conditioning.weight,
                                conditioning.history)
        sample = partial(sample_video, self.model, self.config.diffusion, ids, generator=generator,
                         clip_x0=not self.codec.latent, stride=stride)
        span = None
        with cross_frame_attention(self.model) if zero_shot is not None else nullcontext():
            if zero_shot is not None:
                factor = self.codec.vae.spatial_factor if self.codec.latent else 1
                grid = sampling_grid(schedule_of(self.config.diffusion.schedule, self.config.diffusion.shift), options.steps, options.spacing)
                first_stage = replace(options, sampler="ddim", progress=False, callback=None)
                dx, dy = zero_shot.motion
                span = GridSpan(*moving_start(partial(sample, options=first_stage), len(prompts), shape, grid,
                                              (dx / factor, dy / factor), generator))
            x = sample(shape=shape, options=options, known=known, span=span)
        out = to_uint8(self.codec.decode(x, progress=options.progress and frames > 4 * data.frames))   # long clips: a bar
        if given is not None:
            out[:, 0] = given[0]          # the user's image, not its VAE reconstruction
        return VideoPipelineOutput(out, prompts)

    def _prompts(self, prompt: str | list[str]) -> list[str]:
        prompts = prompt_list(prompt)
        self.world.check_prompts(prompts)
        return prompts

    def _window(self, job: Windows, known: Tensor, mask: Tensor, stride: int = 1) -> Tensor:
        """One trained-length window with the frames in `mask` given (model space); returns model space."""
        size = self.config.data.size
        shape = self.codec.shape(self.config.model.in_channels, self.window, size, size)
        c = job.conditioning
        return sample_video(self.model, self.config.diffusion, job.ids, shape, replace(job.options, progress=False),
                            job.generator, clip_x0=not self.codec.latent, known=KnownFrames(known, mask, c.method, c.weight, c.history),
                            stride=stride)

    def extend(self, video: FrameSource, prompt: str, num_frames: int, generator: torch.Generator | None = None,
               sampling: SampleOptions | None = None, conditioning: FrameConditioning | None = None,
               context: int | None = None, mode: str = "windows", stride: int | None = None) -> VideoPipelineOutput:
        """Continue `video` to num_frames frames (sampling.progress: a bar over the windows).

        mode "windows": windows of the trained length, each conditioned on the last `context` frames
        made so far (default a quarter of the window, at least 2, so velocity carries across the seam).
        mode "hierarchical" (NUWA-XL-like; a model trained with frame strides): first keyframes every
        `stride` frames over the whole length (default the largest trained stride), continued from the
        video's own frames at that stride, then the frames between them by interpolation, so the long
        motion is planned before the details and there are stride times fewer seams.
        Memory is one window's, whatever the length: each window's latents are decoded as soon as it is
        made, and the frames are kept as uint8."""
        prompts = self._prompts(prompt)
        whole(num_frames, "num_frames (--frames)", 1, MAX_EXTENDED_FRAMES)
        check_generator(generator)
        job = Windows(self.model.tokenizer.encode(prompts), self.options(sampling), generator,
                      self._conditioning(conditioning))
        given = self._fit(video, "the video", self.config.data.size)
        if mode == "windows":
            return VideoPipelineOutput(self._continue(given, num_frames, context, 1, job)[None], prompts)
        if mode != "hierarchical":
            raise VidiffError(f"unknown extension mode (--mode) '{mode}'; choose one of: windows, hierarchical")
        stride = max(self.trained_strides()) if stride is None else stride
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
        return VideoPipelineOutput(np.concatenate([given, filled[1:]])[:num_frames][None], prompts)

    def _continue(self, given: np.ndarray, num_frames: int, context: int | None, stride: int, job: Windows) -> np.ndarray:
        """(num_frames, H, W, 3) uint8: `given` and the frames that continue it, window by window."""
        window = self.window
        context = min(max(2, window // 4), len(given)) if context is None else context
        if context > len(given):
            raise VidiffError(f"--context {context} needs at least {context} frames in the video, it has {len(given)}")
        plan = extension_plan(len(given), num_frames, window, context)
        device = self._device()
        frames = [given]
        last = self._encode_frames(to_model_range(given[-context:]).to(device))   # (1, C, k, h, w)
        mask = frame_mask("first_k", window, context)
        for new in tqdm(plan, desc="windows" if stride == 1 else f"keyframes (stride {stride})",
                        disable=not job.options.progress, leave=False):
            known = torch.zeros(1, last.shape[1], window, *last.shape[3:], device=device)
            known[:, :, :context] = last
            x = self._window(job, known, mask, stride)
            pixels = to_uint8(self.codec.decode(x))[0]       # decoded with its context frames before them
            frames.append(pixels[context:context + new])
            end = context + new
            last = x[:, :, end - context:end]
        return np.concatenate(frames)

    def interpolate(self, video: FrameSource, factor: int, prompt: str | None = None,
                    generator: torch.Generator | None = None, sampling: SampleOptions | None = None,
                    conditioning: FrameConditioning | None = None) -> VideoPipelineOutput:
        """N frames in, (N - 1) * factor + 1 out: `factor - 1` new frames between each pair, the given
        frames kept exactly. Without a prompt, a model of the shapes world is told what the frames show
        (their objects, found as the evaluation finds them); any other model is unconditional on text
        (guidance off): the empty prompt let the model draw its own shapes between the given frames."""
        whole(factor, "the interpolation factor (--factor)", 2, 64)
        check_generator(generator)
        given = self._fit(video, "the video", self.config.data.size)
        if prompt is None:
            prompt = self.world.describe(given)
        prompts = self._prompts(prompt) if prompt is not None else [""]
        options = self.options(sampling)
        if prompt is None:
            options = replace(options, guidance=1.0)
        ids = self.model.tokenizer.encode(prompts) if prompt is not None else self.model.tokenizer.empty(1)
        job = Windows(ids, options, generator, self._conditioning(conditioning))
        return VideoPipelineOutput(self._fill(given, factor, job)[None], prompts)

    def _fill(self, given: np.ndarray, factor: int, job: Windows) -> np.ndarray:
        """((N - 1) * factor + 1, H, W, 3) uint8: the N given frames `factor` apart, and frames between."""
        size, window = self.config.data.size, self.window
        plan = interpolation_plan(len(given), factor, window)
        device = self._device()
        keys = self._encode_frames(to_model_range(given).to(device))     # (1, C, N, h, w)
        frames = np.zeros(((len(given) - 1) * factor + 1, size, size, 3), dtype=np.uint8)
        for start, held in tqdm(plan, desc="windows", disable=not job.options.progress, leave=False):
            mask = torch.zeros(window, dtype=torch.bool)
            known = torch.zeros(1, keys.shape[1], window, *keys.shape[3:], device=device)
            for j in held:
                mask[(j - held[0]) * factor] = True
                known[:, :, (j - held[0]) * factor] = keys[:, :, j]
            x = self._window(job, known, mask)
            span = (held[-1] - held[0]) * factor + 1
            frames[start:start + span] = to_uint8(self.codec.decode(x))[0, :span]
        frames[::factor] = given                  # the given frames, not their VAE reconstructions
        return frames
