"""A model as the pipeline sees it, whoever trained it: a bundle of a backbone, a codec, a text encoder
and a schedule, with the family's defaults (shared/DESIGN.md, "One pipeline, every model").

k-diffusion's external denoisers and ComfyUI's model_sampling do the same thing: each family converts
its own time variable and parameterisation into vidiff's log-SNR view once, here, so the denoising
loop, guidance, frame conditioning, context windows and every sampler work on every model. Above
models/, code asks a bundle what it can do (`frame_conditioning`, `offloadable`, `strides`, ...),
never which family it is.

Adapters: own.py (vidiff's checkpoints), external/wan.py (Wan in diffusers format).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import Tensor, nn


@dataclass
class Defaults:
    """How a model samples when not told: its sizes and its sampling settings."""
    frames: int                   # the native clip length: text-to-video's default, the window of long video
    height: int
    width: int
    steps: int
    guidance: float               # vidiff's scale: 1 none, 0 the unconditional model
    sampler: str
    spacing: str
    negative_prompt: str = ""     # what guidance steers away from (the family pipeline's default)
    guidance_2: float | None = None   # a two-expert model's guidance for its second (low-noise) expert
    fps: int = 8                  # the frame rate its clips play at (Wan 2.1 and A14B: 16, TI2V-5B: 24)


@dataclass
class Codec:
    """Pixels in [-1, 1] <-> the backbone's space. time_factor pixel frames make one latent frame
    (after the first, which a causal VAE encodes alone); spatial_factor pixels one latent pixel."""
    shape: Callable[[int, int, int], tuple[int, int, int, int]]   # (frames, h, w) -> (C, T, h', w')
    encode: Callable[[Tensor], Tensor]            # (B, 3, T, H, W) -> (B, C, T', h, w), float32
    decode: Callable[..., Tensor]                 # (latents, progress=False) -> (B, 3, T, H, W) in [-1, 1]
    time_factor: int = 1
    spatial_factor: int = 1
    latent: bool = False                          # False: the identity (pixel models clip x0 to [-1, 1])
    module: nn.Module | None = None               # the VAE, for offload and dtype

    def latent_frames(self, frames: int) -> int:
        return (frames - 1) // self.time_factor + 1 if self.time_factor > 1 else frames

    def pixel_frames(self, latent_frames: int) -> int:
        return (latent_frames - 1) * self.time_factor + 1 if self.time_factor > 1 else latent_frames


@dataclass
class Bundle:
    """What the pipeline runs. `net(x, log_snr, *cond)` is the raw network in vidiff's log-SNR view
    (x the VP state's model input, as diffusion.model_input gives it), returning the `prediction`;
    `encode(prompts, stride)` gives the `cond` tuple it takes."""
    name: str                                     # for messages: a path or 'the embedded model'
    net: Callable[..., Tensor]
    encode: Callable[[list[str], int], tuple[Tensor, ...]]
    prediction: str                               # eps | x0 | v | flow
    schedule: str                                 # a name of diffusion.SCHEDULES (the time axis it trained on)
    shift: float                                  # that schedule's time shift (SD3's; Wan's flow_shift)
    codec: Codec
    defaults: Defaults
    backbone: nn.Module                           # what LoRA adapts, compile compiles, sequence parallelism splits
    multiples: tuple[int, int, int]               # (frames, height, width) of the backbone's input per patch
    max_patches: int | None = None                # patches along each axis the position tables cover
    trained_size: tuple[int, int, int] | None = None   # (frames, h, w) it trained at: the scale it is held near
    frame_conditioning: bool = False              # trained with frame masks (given frames as an input)
    strides: tuple[int, ...] = (1,)               # frame strides it makes clips at
    check_prompts: Callable[[list[str]], None] = lambda prompts: None
    describe: Callable = lambda frames: None      # a caption of (T, H, W, 3) uint8 frames in its words, or None
    words: str = "any words (its text encoder reads free text)"
    scheduler: object = None                      # the directory's diffusers flow scheduler: one more sampler
    distilled_steps: int = 0                      # a distilled student: its own step count, no guidance
    guidance_interval: list[float] | None = None
    history_guidance: float = 1.0
    modules: dict[str, nn.Module] = field(default_factory=dict)   # text / backbone / codec, for offload
    offloadable: bool = False                     # components can move to the device one at a time
    lora_target: nn.Module | None = None          # the module adapters attach to (default: backbone)
    lora_target_2: nn.Module | None = None        # a two-expert model's second expert (Wan 2.2 A14B's low-noise)
    low_noise: Callable[[Tensor], bool] | None = None   # two experts: whether the second runs at this log-SNR
    lora_names: dict[str, str] | None = None      # module -> its original name, for downloaded LoRA files (None: vidiff's)
    call: Callable[..., Tensor] | None = None     # net with the backbone given, call(module, x, log_snr, *cond): a
                                                  # training run's DDP/FSDP wrapper of `backbone` in its place
    config: object = None                         # vidiff's own: the Config it was trained with
    model: nn.Module | None = None                # vidiff's own: the TextToVideoModel (zero-shot, strides)
