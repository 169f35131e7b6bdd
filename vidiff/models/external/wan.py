"""Wan 2.1 text-to-video (diffusers format) behind vidiff's three interfaces: a backbone, a codec and
a text encoder. The modules are diffusers' and transformers' own; this file only adapts their calls.

Wan is a rectified-flow model: z_s = (1 - s) x0 + s eps, its transformer predicts the velocity
eps - x0 from z_s and the timestep 1000 s. In vidiff's log-SNR view s = sigmoid(-log_snr / 2), so
vidiff's samplers run it as `prediction: flow` through `timestep()`.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor, nn

from ...errors import VidiffError
from ..bundle import Bundle, Codec, Defaults
from ..sequence_parallel import all_to_all, gather
from .wan_names import original_names

NAME = "wan"                   # the family: the model_type of its weights in vidiff checkpoints
TRAIN_TIMESTEPS = 1000
MAX_TEXT_TOKENS = 512          # WanPipeline's max_sequence_length
# WanPipeline's defaults; its own scheduler on the directory's noise levels
DEFAULTS = Defaults(frames=81, height=480, width=832, steps=50, guidance=5.0, sampler="scheduler", spacing="model",
                    fps=16)


class WanBackbone(nn.Module):
    """forward(z, timestep, context[, condition]) -> velocity, with Wan's own time convention (0..1000).

    Wan 2.2 A14B has two experts: `transformer` runs the steps at t >= boundary (boundary_ratio x 1000),
    `transformer_2` the rest. Wan 2.2 TI2V-5B (per_token) takes given frames as clean tokens at
    timestep 0 (WanImageToVideoPipeline's expand_timesteps): `condition` is vidiff's frame condition,
    the known latents then the frame mask (diffusion.conditioning.frame_condition)."""

    def __init__(self, transformer: nn.Module, transformer_2: nn.Module | None = None, boundary: float | None = None,
                 per_token: bool = False):
        super().__init__()
        self.transformer, self.transformer_2 = transformer, transformer_2
        self.boundary, self.per_token = boundary, per_token
        self.stream: torch.device | None = None      # offload "model": experts brought here one at a time
        self.moves: list[tuple[str, str]] = []       # (expert, "device" | "host"): what streaming moved
        self.on_device: str | None = None            # the expert streaming last brought (a name: not a submodule)

    @staticmethod
    def timestep(log_snr: Tensor) -> Tensor:
        """vidiff's log-SNR -> Wan's timestep: 1000 times the flow time s = sigma / (alpha + sigma)."""
        return torch.sigmoid(-log_snr.double() / 2) * TRAIN_TIMESTEPS

    def low_noise(self, timestep: Tensor) -> bool:
        """Whether the second expert runs at `timestep` (diffusers: t < boundary; the scheduler's integer
        timesteps come back from log-SNR within 1e-9, hence the margin)."""
        return self.transformer_2 is not None and float(timestep.max()) + 1e-6 < self.boundary

    def shard_blocks(self) -> list[nn.Module]:
        """What FSDP shards one by one: every transformer block of each expert."""
        return [block for expert in self.experts().values() for block in expert.blocks]

    def experts(self) -> dict[str, nn.Module]:
        return {"transformer": self.transformer, **({"transformer_2": self.transformer_2} if self.transformer_2 else {})}

    def stream_to(self, device: torch.device | None) -> None:
        """Offload "model" for two experts: both on the host, each brought to `device` when it runs and
        sent back when the other does, so one expert's weights are on the device at a time (None: all
        back to the host)."""
        for name, expert in self.experts().items():
            expert.to("cpu")
        self.stream, self.on_device = device, None
        if device is not None:
            self.bring(self.transformer)

    def bring(self, expert: nn.Module) -> None:
        name = next(n for n, m in self.experts().items() if m is expert)
        if self.stream is None or self.on_device == name:
            return
        if self.on_device is not None:               # the other one leaves first: one expert's peak, not two
            self.experts()[self.on_device].to("cpu")
            self.moves.append((self.on_device, "host"))
        expert.to(self.stream)
        self.moves.append((name, "device"))
        self.on_device = name

    def forward(self, z: Tensor, timestep: Tensor, context: Tensor, condition: Tensor | None = None) -> Tensor:
        expert = self.transformer_2 if self.low_noise(timestep) else self.transformer
        self.bring(expert)
        t = timestep.expand(z.shape[0])
        if condition is not None:
            if not self.per_token:
                raise VidiffError("this Wan model takes no frame condition")
            known, m = condition[:, :-1], condition[:, -1:]
            z = m * known + (1 - m) * z                       # given frames enter clean ...
            _, ph, pw = expert.config.patch_size
            t = ((1 - m[:, 0, :, ::ph, ::pw]).flatten(1) * t[:, None])   # ... at timestep 0, per token
        dtype = expert.dtype
        return expert(hidden_states=z.to(dtype), timestep=t, encoder_hidden_states=context.to(dtype),
                      return_dict=False)[0]

    @property
    def max_patches(self) -> int:
        """Patches along each axis its rotary tables cover."""
        return self.transformer.config.rope_max_seq_len

    @property
    def multiples(self) -> tuple[int, int, int]:
        """(frames, height, width) of latent a patch spans."""
        return tuple(self.transformer.config.patch_size)

    def split_sequence(self, group) -> None:
        """Sequence parallelism (DeepSpeed-Ulysses) over the processes of `group` (a SequenceGroup):
        each holds 1/N of the tokens through every block; self-attention trades the token split for a
        head split (all-to-all), attends over the whole clip for H/N heads, and trades back. Text
        cross-attention and the MLP are per token. The tokens are gathered after the last block."""
        heads = self.transformer.config.num_attention_heads
        if heads % group.size:
            raise VidiffError(f"sequence parallelism over {group.size} processes needs attention heads they divide; "
                              f"this model has {heads}: run a process count that divides {heads}, or one process")

        def split(module, args):
            tokens = args[0].shape[1]
            if tokens % group.size:
                raise VidiffError(f"sequence parallelism over {group.size} processes needs a token count they divide; "
                                  f"this clip has {tokens} (choose another --frames or --size)")
            return (args[0].chunk(group.size, dim=1)[group.rank].contiguous(), *args[1:])

        def split_tokens(module, args, kwargs):
            if self.per_token and kwargs.get("timestep") is not None and kwargs["timestep"].ndim == 2:
                raise VidiffError("sequence parallelism does not split per-token timesteps yet (given frames on a "
                                  "Wan 2.2 TI2V model); run image-to-video in one process")

        for expert in self.experts().values():
            blocks = expert.blocks
            expert.register_forward_pre_hook(split_tokens, with_kwargs=True)
            blocks[0].register_forward_pre_hook(split)
            blocks[-1].register_forward_hook(lambda module, args, out: gather(out, 1, group))
            for block in blocks:
                block.attn1.set_processor(UlyssesProcessor(group))


class UlyssesProcessor:
    """diffusers' WanAttnProcessor for self-attention on this process's tokens, with DeepSpeed-Ulysses'
    all-to-all around the attention (the same arithmetic as the whole sequence on one process)."""

    def __init__(self, group):
        self.group = group

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states=None, attention_mask=None,
                 rotary_emb=None) -> Tensor:
        from diffusers.models.attention_dispatch import dispatch_attention_fn
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        q, k = attn.norm_q(q), attn.norm_k(k)                          # per token: before the split
        q, k, v = (all_to_all(x.unflatten(2, (attn.heads, -1)), scatter=2, gather=1, group=self.group)
                   for x in (q, k, v))                                 # (B, L, H/N, d): the whole clip
        if rotary_emb is not None:
            q, k = _rotary(q, *rotary_emb), _rotary(k, *rotary_emb)
        out = dispatch_attention_fn(q, k, v, attn_mask=attention_mask, dropout_p=0.0, is_causal=False)
        out = all_to_all(out.type_as(q), scatter=1, gather=2, group=self.group).flatten(2, 3)   # (B, L/N, D)
        return attn.to_out[1](attn.to_out[0](out))


def _rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Wan's rotary embedding on interleaved pairs (as diffusers' WanAttnProcessor applies it)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


class WanCodec:
    """Pixels in [-1, 1] <-> Wan's normalised latents ((z - mean) / std, as WanPipeline does)."""

    def __init__(self, vae: nn.Module):
        self.vae = vae
        c = vae.config
        self.mean = torch.tensor(c.latents_mean).view(1, c.z_dim, 1, 1, 1)
        self.std = torch.tensor(c.latents_std).view(1, c.z_dim, 1, 1, 1)
        self.time_factor, self.spatial_factor = c.scale_factor_temporal, c.scale_factor_spatial
        self.channels = c.z_dim
        self.latent = True

    def shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        return (self.channels, (frames - 1) // self.time_factor + 1, height // self.spatial_factor,
                width // self.spatial_factor)

    def _param(self) -> Tensor:
        return next(self.vae.parameters())

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> float32 latents: the posterior mean, normalised."""
        p = self._param()
        z = self.vae.encode(video.to(p.device, p.dtype)).latent_dist.mean.float()
        return (z - self.mean.to(z.device)) / self.std.to(z.device)

    @torch.no_grad()
    def decode(self, z: Tensor, progress: bool = False, tiled: bool = False) -> Tensor:
        p = self._param()
        (self.vae.enable_tiling if tiled else self.vae.disable_tiling)()
        z = z.to(p.device, p.dtype) * self.std.to(p.device, p.dtype) + self.mean.to(p.device, p.dtype)
        return self.vae.decode(z, return_dict=False)[0].float().clamp(-1, 1)


class WanText:
    """Prompts -> (B, 512, D) UMT5 states, zero past each prompt's tokens (as WanPipeline pads them)."""

    def __init__(self, tokenizer, encoder: nn.Module, max_length: int = MAX_TEXT_TOKENS):
        self.tokenizer, self.encoder, self.max_length = tokenizer, encoder, max_length

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> Tensor:
        from diffusers.pipelines.wan.pipeline_wan import prompt_clean   # WanPipeline's own cleaning
        prompts = [prompt_clean(p) for p in prompts]
        for p in prompts:
            n = len(self.tokenizer(p, add_special_tokens=True).input_ids)
            if n > self.max_length:
                print(f"note: the prompt has {n} tokens; the text encoder reads the first {self.max_length}",
                      file=sys.stderr)
        t = self.tokenizer(prompts, padding="max_length", max_length=self.max_length, truncation=True,
                           add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        device = next(self.encoder.parameters()).device
        mask = t.attention_mask.to(device)
        states = self.encoder(t.input_ids.to(device), mask).last_hidden_state
        return states * mask[..., None].to(states.dtype)


# model_index.json settings beyond the components that this adapter handles: Wan 2.2's experts, TI2V's timesteps
FLAGS = ("boundary_ratio", "expand_timesteps")
COMPONENTS = {"transformer": "WanTransformer3DModel", "vae": "AutoencoderKLWan", "text_encoder": None,
              "tokenizer": None, "scheduler": None}
OPTIONAL = {"transformer_2": "WanTransformer3DModel"}     # Wan 2.2 A14B's low-noise expert
# the Wan 2.2 releases' own defaults (their generate.py configs): A14B at 40 steps, guidance 4 then 3;
# TI2V-5B at 121 frames of 704x1280
A14B_DEFAULTS = replace(DEFAULTS, steps=40, guidance=4.0, guidance_2=3.0)
TI2V_DEFAULTS = replace(DEFAULTS, frames=121, height=704, width=1280, fps=24)


def check_index(folder: Path, index: dict) -> None:
    """What of the directory's pipeline class this adapter runs: WanPipeline's text-to-video layouts
    (2.1, 2.2 A14B, 2.2 TI2V-5B), and WanImageToVideoPipeline only for TI2V-5B, whose image-to-video
    is the per-token timesteps vidiff runs (the others feed the image as extra input channels, and Wan
    2.1's also as CLIP states). The two-expert settings come together."""
    if index.get("_class_name") == "WanImageToVideoPipeline" and not index.get("expand_timesteps"):
        clip = (index.get("image_encoder") or [None])[0] is not None
        raise VidiffError(f"'{folder}' is a Wan image-to-video model whose transformer takes the image as extra "
                          f"input channels{' and CLIP image states (image_encoder)' if clip else ''}, which vidiff "
                          "does not run yet; use a text-to-video or TI2V-5B directory, with --image for image-to-video")
    second = (index.get("transformer_2") or [None])[0] is not None
    if second != (index.get("boundary_ratio") is not None):
        raise VidiffError(f"'{folder}' has {'transformer_2 but no boundary_ratio' if second else 'boundary_ratio but no transformer_2'} "
                          "in model_index.json; a two-expert Wan 2.2 model needs both")


def _loaded(what: str, folder: Path, load):
    from transformers.utils import logging
    shown = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()            # its "Loading weights 22/22" bar per component: noise on every load
    try:
        module = load()
    except (OSError, ValueError, EnvironmentError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VidiffError(f"cannot load the Wan {what} in '{folder}': {first}") from None
    finally:
        if shown:
            logging.enable_progress_bar()
    return module.eval().requires_grad_(False) if isinstance(module, nn.Module) else module


def lora_names(folder: Path) -> dict[str, str]:
    """The transformer's module names -> the original Wan code's (LoRA files), from its config alone."""
    import json
    try:
        blocks = json.loads((folder / "transformer" / "config.json").read_text())["num_layers"]
    except (OSError, KeyError, ValueError) as e:
        raise VidiffError(f"cannot read the transformer's config in '{folder}' ({type(e).__name__}: {e})") from None
    return original_names(blocks)


def clip_multiples(folder: Path) -> tuple[int, int]:
    """(t, m) from the configs alone: clips take 1 + t*k frames and sides a multiple of m pixels (the VAE's
    compression times the transformer's patch)."""
    import json
    try:
        patch = json.loads((folder / "transformer" / "config.json").read_text())["patch_size"]
        vae = json.loads((folder / "vae" / "config.json").read_text())
    except (OSError, KeyError, ValueError) as e:
        raise VidiffError(f"cannot read the transformer's or VAE's config in '{folder}' ({type(e).__name__}: {e})") from None
    return vae.get("scale_factor_temporal", 4), vae.get("scale_factor_spatial", 8) * max(patch[1:])


def load_backbone(folder: Path, dtype: torch.dtype) -> WanBackbone:
    """The transformer, and Wan 2.2 A14B's second expert, with the directory's model_index.json flags."""
    import json

    from diffusers import WanTransformer3DModel
    index = json.loads((folder / "model_index.json").read_text())
    check_index(folder, index)
    load = lambda name: _loaded(name.replace("_", " "), folder,     # noqa: E731
                                lambda: WanTransformer3DModel.from_pretrained(folder / name, torch_dtype=dtype))
    ratio = index.get("boundary_ratio")
    return WanBackbone(load("transformer"), load("transformer_2") if ratio is not None else None,
                       None if ratio is None else ratio * TRAIN_TIMESTEPS, bool(index.get("expand_timesteps")))


def load_codec(folder: Path) -> WanCodec:
    """float32, as Wan's reference code keeps its VAE."""
    from diffusers import AutoencoderKLWan
    return WanCodec(_loaded("VAE", folder, lambda: AutoencoderKLWan.from_pretrained(folder / "vae", torch_dtype=torch.float32)))


def load_text(folder: Path, dtype: torch.dtype) -> WanText:
    from transformers import AutoTokenizer, UMT5EncoderModel
    encoder = _loaded("text encoder", folder, lambda: UMT5EncoderModel.from_pretrained(folder / "text_encoder", torch_dtype=dtype))
    return WanText(_loaded("tokenizer", folder, lambda: AutoTokenizer.from_pretrained(folder / "tokenizer")), encoder)


def bundle(folder: Path, dtype: torch.dtype, scheduler, backbone: WanBackbone | None = None,
           text_encoder: bool = True) -> Bundle:
    """The directory as a bundle: the transformer and text encoder in `dtype`, the VAE in float32.
    scheduler: the directory's diffusers scheduler (UniPC with flow sigmas), its default sampler;
    backbone: one already loaded (a training run's); text_encoder False: none loaded (prompts encoded
    earlier, e.g. a training run's sample prompts)."""
    backbone = backbone if backbone is not None else load_backbone(folder, dtype)
    codec, text = load_codec(folder), load_text(folder, dtype) if text_encoder else None
    c = scheduler.config
    shift = float(c.get("flow_shift") or c.get("shift") or 1.0)
    two = backbone.transformer_2 is not None

    def call(module: nn.Module, x: Tensor, log_snr: Tensor, context: Tensor, *condition: Tensor) -> Tensor:
        return module(x, WanBackbone.timestep(log_snr).float(), context, *condition).float()

    def net(x: Tensor, log_snr: Tensor, context: Tensor, *condition: Tensor) -> Tensor:
        return call(backbone, x, log_snr, context, *condition)

    def encode(prompts: list[str], stride: int = 1) -> tuple[Tensor, ...]:
        if text is None:
            raise VidiffError("this bundle was loaded without its text encoder")
        return (text.encode(prompts),)

    return Bundle(
        name=str(folder), net=net, call=call, encode=encode, prediction="flow", schedule="rectified", shift=shift,
        codec=Codec(shape=codec.shape, encode=codec.encode, decode=codec.decode, time_factor=codec.time_factor,
                    spatial_factor=codec.spatial_factor, latent=True, module=codec.vae),
        defaults=A14B_DEFAULTS if two else TI2V_DEFAULTS if backbone.per_token else DEFAULTS,
        backbone=backbone, multiples=backbone.multiples, max_patches=backbone.max_patches,
        frame_conditioning=backbone.per_token, scheduler=scheduler,
        modules={**({"text": text.encoder} if text else {}), "backbone": backbone, "codec": codec.vae}, offloadable=True,
        lora_target=backbone.transformer, lora_target_2=backbone.transformer_2,
        low_noise=(lambda log_snr: backbone.low_noise(backbone.timestep(log_snr).float())) if two else None,
        lora_names=original_names(len(backbone.transformer.blocks)))
