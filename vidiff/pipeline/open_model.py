"""OpenVideoPipeline: a diffusers-format open model (Wan 2.1) sampled by vidiff.

    pipe = VideoPipeline.from_pretrained("Wan2.1-T2V-1.3B-Diffusers", torch_dtype="bf16", offload="model")
    video = pipe("a cat walks on the grass", num_frames=81, height=480, width=832,
                 generator=torch.Generator().manual_seed(0))

By default the model samples with the scheduler its directory names (Wan: UniPC with flow sigmas),
step for step as diffusers' own pipeline does, so a seed gives diffusers' video. Any vidiff sampler
(flow-euler, dpm++2m, ddim, ...) runs it too, on the directory's noise levels (spacing "model") or on
vidiff's spacings of its shifted flow schedule. Guidance is vidiff's classifier-free guidance, LoRA is
vidiff's adapters, in diffusers' file format.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..data.io import to_uint8
from ..devices import allow_tf32, randn, resolve_dtype
from ..diffusion import SAMPLERS, SPACINGS, alpha_sigma, classifier_free_guidance, make_denoiser, sampling_grid
from ..diffusion.schedules import flow_sigmas_log_snr, rectified_log_snr, shifted
from ..errors import VidiffError
from ..models.external import OpenModel, load_open_model
from ..models.lora import load_lora, merge_lora
from ..models.sequence_parallel import split_backbone
from .sampling import SampleOptions
from .checks import (check_device, check_generator, check_lora_scale, check_sample_options, prompt_list,
                     sampling_group, whole)
from .output import VideoPipelineOutput

SCHEDULER = "scheduler"      # sampler: the directory's own diffusers scheduler (the default)
MODEL_SPACING = "model"      # spacing: the directory's scheduler's noise levels, for vidiff's samplers
# model: each component on the device only while it runs (diffusers' enable_model_cpu_offload);
# text: the same, with the text encoder run on the host (Wan's --t5_cpu: its 5.7 B parameters never
# reach the device, the mode of Wan's own 8.19 GB figure for the 1.3B model)
OFFLOADS = ("none", "model", "text")
LORA_PREFIXES = ("transformer.", "base_model.model.")    # diffusers' and peft's key names


class OpenVideoPipeline:
    def __init__(self, model: OpenModel, device: torch.device, offload: str = "none", vae_tiling: bool = False):
        if offload not in OFFLOADS:
            raise VidiffError(f"unknown --offload '{offload}'; choose one of: {', '.join(OFFLOADS)}")
        self.model, self.device, self.offload, self.vae_tiling = model, torch.device(device), offload, vae_tiling
        for module in model.modules().values():
            module.to("cpu" if offload != "none" else self.device)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None,
                        torch_dtype: str | torch.dtype | None = None, offload: str = "none",
                        vae_tiling: bool = False) -> "OpenVideoPipeline":
        """torch_dtype: the transformer's and text encoder's weights (the VAE stays float32, as in Wan's
        own code). offload "model": each component on the device only while it runs (diffusers'
        enable_model_cpu_offload); "text": the text encoder also runs on the host. vae_tiling: decode in overlapping tiles (less memory, large frames)."""
        allow_tf32()
        device = check_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return cls(load_open_model(path, resolve_dtype(torch_dtype)), device, offload or "none", vae_tiling)

    @contextmanager
    def _placed(self, module: torch.nn.Module):
        """`module` on the device for the duration (offloaded: back to the host after)."""
        moves = self.offload == "model" or (self.offload == "text" and module is not self.model.text.encoder)
        if moves:
            module.to(self.device)
        try:
            yield
        finally:
            if moves:
                module.to("cpu")
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()

    def options(self, sampling: SampleOptions | None = None) -> SampleOptions:
        """Unset options from the family pipeline's defaults and the directory's own scheduler, checked."""
        d = self.model.defaults
        o = sampling_group(sampling).filled(d["steps"], d["guidance"], SCHEDULER, MODEL_SPACING)
        if o.sampler == SCHEDULER and (o.eta or o.callback is not None):
            raise VidiffError(f"eta and callback are for vidiff's samplers (--sampler ddim, ...), not the directory's "
                              f"own scheduler (--sampler {SCHEDULER})")
        return check_sample_options(o, (SCHEDULER, *SAMPLERS), (MODEL_SPACING, *SPACINGS))

    def check_size(self, frames: int, height: int, width: int) -> None:
        codec, (pt, ph, pw) = self.model.codec, self.model.backbone.multiples
        if not isinstance(frames, int) or frames < 1 or (frames - 1) % (codec.time_factor * pt):
            raise VidiffError(f"cannot make {frames} frames: this model makes 1 + {codec.time_factor * pt}k frames "
                              f"(e.g. {self.model.defaults['num_frames']})")
        fh, fw = codec.spatial_factor * ph, codec.spatial_factor * pw
        if height < fh or width < fw or height % fh or width % fw:
            raise VidiffError(f"cannot make frames of {height}x{width}: the VAE and the patches need a height that is "
                              f"a multiple of {fh} and a width that is a multiple of {fw}")
        most = self.model.backbone.max_patches
        grid = ((frames - 1) // codec.time_factor // pt + 1, height // fh, width // fw)
        if max(grid) > most:
            raise VidiffError(f"a clip of {frames}x{height}x{width} is {'x'.join(map(str, grid))} patches; this model's "
                              f"position tables cover {most} along each axis")

    def encode_prompts(self, prompts: list[str], negative: str, guided: bool) -> tuple[Tensor, Tensor]:
        with self._placed(self.model.text.encoder):
            cond = self.model.text.encode(prompts)
            null = self.model.text.encode([negative] * len(prompts)) if guided else cond
        return cond.to(self.device), null.to(self.device)

    def __call__(self, prompt: str | list[str], negative_prompt: str = "", num_frames: int | None = None,
                 height: int | None = None, width: int | None = None, generator: torch.Generator | None = None,
                 sampling: SampleOptions | None = None) -> VideoPipelineOutput:
        """Text-to-video. Unset sizes and sampling options are the family pipeline's defaults (Wan: 81
        frames of 480x832, 50 steps, guidance 5; the directory's scheduler). generator: a CPU one gives
        diffusers' video for its seed."""
        prompts = prompt_list(prompt)
        check_generator(generator)
        if not isinstance(negative_prompt, str):
            raise VidiffError(f"the negative prompt must be a string, got {type(negative_prompt).__name__}")
        o = self.options(sampling)
        d = self.model.defaults
        frames, height, width = (d["num_frames"] if num_frames is None else num_frames,
                                 d["height"] if height is None else height, d["width"] if width is None else width)
        self.check_size(frames, whole(height, "height (--size)"), whole(width, "width (--size)"))
        cond, null = self.encode_prompts(prompts, negative_prompt, o.guidance != 1.0)
        z = randn((len(prompts), *self.model.codec.shape(frames, height, width)), generator, self.device)
        with self._placed(self.model.backbone):
            z = self._denoise(z, cond, null, o, generator)
        with self._placed(self.model.codec.vae):
            video = self.model.codec.decode(z, tiled=self.vae_tiling)
        return VideoPipelineOutput(to_uint8(video), prompts)

    def _scheduler(self, steps: int):
        scheduler = copy.deepcopy(self.model.scheduler)       # its state (step index, history) is per call
        scheduler.set_timesteps(steps, device=self.device)
        return scheduler

    @torch.no_grad()
    def _denoise(self, z: Tensor, cond: Tensor, null: Tensor, o: SampleOptions, generator) -> Tensor:
        """Pure noise z (B, C, T, h, w) in the flow's state -> clean latents."""
        backbone = self.model.backbone
        if o.sampler == SCHEDULER:      # diffusers' scheduler, driven exactly as its pipeline drives it
            net = lambda x, timestep, context: backbone(x, timestep, context).float()   # noqa: E731
            guided = classifier_free_guidance(net, (cond,), (null,), o.guidance)
            scheduler = self._scheduler(o.steps)
            for t in tqdm(scheduler.timesteps, disable=not o.progress, desc="sampling", leave=False):
                z = scheduler.step(guided(z, t.expand(z.shape[0])), t, z, return_dict=False)[0]
            return z
        # vidiff's samplers: the flow model in the log-SNR view (prediction "flow")
        net = lambda x, log_snr, context: backbone(x, backbone.timestep(log_snr).float(), context).float()  # noqa: E731
        denoiser = make_denoiser(classifier_free_guidance(net, (cond,), (null,), o.guidance), "flow")
        if o.spacing == MODEL_SPACING:
            grid = flow_sigmas_log_snr(self._scheduler(o.steps).sigmas.cpu())
        else:
            grid = sampling_grid(shifted(rectified_log_snr, self.model.flow_shift), o.steps, o.spacing)
        alpha, sigma = alpha_sigma(grid[0])
        x_T = z * (alpha + sigma).float()            # the VP state whose flow state is z
        kwargs = {"eta": o.eta} if o.sampler == "ddim" else {}
        return SAMPLERS[o.sampler](denoiser, x_T, grid.to(self.device), generator=generator, progress=o.progress,
                                   callback=o.callback,
                                   **kwargs)

    def extend(self, *args, **kwargs):
        raise VidiffError("extension conditions on given frames, which vidiff's own models are trained for; "
                          "a diffusers-format model makes text-to-video here")

    def interpolate(self, *args, **kwargs):
        raise VidiffError("interpolation conditions on given frames, which vidiff's own models are trained for; "
                          "a diffusers-format model makes text-to-video here")

    def split_sequences(self, group) -> None:
        """Sampling under torchrun: every process makes the same video, each holding 1/N of the
        transformer's tokens (`group`: models.sequence_parallel.sequence_group())."""
        split_backbone(self.model.backbone, group)

    def load_lora(self, path: str | Path, scale: float = 1.0, name: str | None = None) -> str:
        """A LoRA of the transformer: vidiff's, diffusers' (`transformer.` keys) or peft's (a folder
        with adapter_config.json); one for another base model is a one-line error."""
        check_lora_scale(scale)
        path = Path(path)
        if path.is_dir() and not any((path / f).is_file() for f in ("lora.safetensors", "adapter_model.safetensors")):
            from ..checkpoint import resolve_checkpoint
            path = resolve_checkpoint(path)
        return load_lora(self.model.backbone.transformer, path, scale, name, prefixes=LORA_PREFIXES)

    def merge_lora(self) -> int:
        return merge_lora(self.model.backbone.transformer)
