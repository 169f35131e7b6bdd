"""vidiff's own models as a bundle: a TextToVideoModel (word tokenizer, text encoder, backbone), its
codec (pixels, or the latents of vidiff's causal VAE) and the diffusion section of the config it was
trained with, which names its prediction, schedule and sampling defaults."""
from __future__ import annotations

import torch
from torch import Tensor

from ..devices import autocast
from . import input_multiples
from .bundle import Bundle, Codec, Defaults
from .codec import LatentCodec
from .text_to_video import TextToVideoModel


def dtype_of(module) -> torch.dtype:
    return next(module.parameters()).dtype


def own_codec(codec: LatentCodec, channels: int) -> Codec:
    vae = codec.vae

    def encode(pixels: Tensor) -> Tensor:
        """Given frames, each encoded on its own as an image (with a causal VAE exactly frame 0 of a
        clip), as known frames are wherever they sit; a VAE that packs frames encodes the clip."""
        if vae is None or vae.time_factor > 1:
            return codec.encode(pixels)
        b, _, t = pixels.shape[:3]
        z = codec.encode(pixels.transpose(1, 2).flatten(0, 1)[:, :, None])   # (B*T, C, 1, h, w)
        return z[:, :, 0].unflatten(0, (b, t)).transpose(1, 2)

    def decode(z: Tensor, progress: bool = False, tiled: bool = False) -> Tensor:
        return codec.decode(z, progress=progress)       # vidiff's VAE always decodes in tiles

    return Codec(shape=lambda f, h, w: codec.shape(channels, f, h, w), encode=encode, decode=decode,
                 time_factor=vae.time_factor if vae is not None else 1,
                 spatial_factor=vae.spatial_factor if vae is not None else 1, latent=vae is not None, module=vae)


def own_bundle(model: TextToVideoModel, config, codec: LatentCodec, name: str, world=None) -> Bundle:
    """config: the checkpoint's Config; world: what its data's world knows of prompts and frames
    (data.worlds: check_prompts, describe)."""
    d, data = config.diffusion, config.data

    def net(x: Tensor, log_snr: Tensor, *cond: Tensor) -> Tensor:
        with autocast(dtype_of(model.backbone), x.device):
            return model(x, log_snr, *cond).float()     # guidance and the sampler's updates in full precision

    def encode(prompts: list[str], stride: int = 1) -> tuple[Tensor, ...]:
        device = next(model.parameters()).device
        ids = model.tokenizer.encode(prompts).to(device)
        with autocast(dtype_of(model.text_encoder), device):
            return model.encode(ids, stride)

    tf, factor = input_multiples(config.model)
    strides = tuple(config.trained_strides()) if model.stride_embed is not None else (1,)
    return Bundle(
        name=name, net=net, encode=encode, prediction=d.prediction, schedule=d.schedule, shift=d.shift,
        codec=own_codec(codec, config.model.in_channels),
        defaults=Defaults(data.frames, data.size, data.size, d.sampling_steps, d.guidance, d.sampler, d.spacing),
        backbone=model.backbone, multiples=(tf, factor, factor), trained_size=(data.frames, data.size, data.size),
        frame_conditioning=model.frame_conditioning, strides=strides,
        check_prompts=world.check_prompts if world else (lambda prompts: None),
        describe=world.describe if world else (lambda frames: None), words=", ".join(model.tokenizer.known),
        distilled_steps=d.distilled_steps, guidance_interval=d.guidance_interval, history_guidance=d.history_guidance,
        modules={"model": model, **({"vae": codec.vae} if codec.vae is not None else {})},
        lora_target=model, config=config, model=model)
