"""Inference, shaped like the diffusers pipelines users know.

    pipe = VideoPipeline.from_pretrained()            # the embedded model, a run, or a diffusers-format directory
    video = pipe("a red circle bouncing", num_frames=16, generator=torch.Generator().manual_seed(0),
                 sampling=SampleOptions(steps=25, guidance=3.0))   # unset options: the model's own
    video = pipe("a red circle bouncing", num_inference_steps=25, guidance_scale=3.0)   # diffusers' names
    video.frames                                      # output_type "np": floats in [0, 1]; "uint8", "pil", "latent"
    video.save("out.mp4")
    pipe("a red circle bouncing", num_frames=64)      # past the native length: context windows
    pipe("a red circle bouncing", image="first.png",          # image-to-video
         conditioning=FrameConditioning(method="guidance"))   # how given frames condition (default: the model's best)
    pipe.extend("clip.mp4", "a red circle bouncing", num_frames=64)
    pipe.interpolate("clip.mp4", factor=4)

Option groups, not long signatures: SampleOptions (steps, guidance, sampler, spacing, eta, progress,
callback), FrameConditioning (method, weight), ZeroShot (motion) and ContextWindows (length, overlap)
are shared by every call; call.py maps diffusers' argument names onto them.

Every model is a bundle (models/bundle.py); the pipeline never asks which family it runs.
sampling.py: the denoising loop; schedulers.py: a directory's diffusers scheduler as one more sampler;
context_windows.py: long video in one pass; inputs.py: user images and videos fitted to the frame size;
windows.py: which frames each window of an extension or interpolation generates; video_pipeline.py: the API.
"""
from ..checkpoint import DEFAULT_MODEL
from .context_windows import ContextWindows
from .output import VideoPipelineOutput
from .sampling import METHODS, FrameConditioning, GridSpan, KnownFrames, SampleOptions, sample_video
from .video_pipeline import VideoPipeline
from .zero_shot import ZeroShot

__all__ = ["DEFAULT_MODEL", "METHODS", "ContextWindows", "FrameConditioning", "GridSpan", "KnownFrames", "SampleOptions",
           "VideoPipeline", "VideoPipelineOutput", "ZeroShot", "sample_video"]
