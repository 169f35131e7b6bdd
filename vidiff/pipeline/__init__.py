"""Inference, shaped like the diffusers pipelines users know.

    pipe = VideoPipeline.from_pretrained()            # the embedded default model (torch_dtype="bf16", compile=True on a GPU)
    video = pipe("a red circle bouncing", num_frames=16, generator=torch.Generator().manual_seed(0),
                 sampling=SampleOptions(steps=25, guidance=3.0))   # unset options: the model's own
    video.save("out.mp4")
    pipe("a red circle bouncing", image="first.png",          # image-to-video
         conditioning=FrameConditioning(method="guidance"))   # how given frames condition (default: the model's best)
    pipe.extend("clip.mp4", "a red circle bouncing", num_frames=64)
    pipe.interpolate("clip.mp4", factor=4)

Option groups, not long signatures: SampleOptions (steps, guidance, sampler, spacing, eta, progress,
callback), FrameConditioning (method, weight) and ZeroShot (motion) are shared by every call.

sampling.py: the denoising loop; inputs.py: user images and videos fitted to the model; windows.py:
which frames each window of a long video or an interpolation generates; video_pipeline.py: the API.
"""
from ..checkpoint import DEFAULT_MODEL
from .sampling import METHODS, FrameConditioning, GridSpan, KnownFrames, SampleOptions, sample_video
from .video_pipeline import VideoPipeline, VideoPipelineOutput
from .zero_shot import ZeroShot

__all__ = ["DEFAULT_MODEL", "METHODS", "FrameConditioning", "GridSpan", "KnownFrames", "SampleOptions", "VideoPipeline",
           "VideoPipelineOutput", "ZeroShot", "sample_video"]
