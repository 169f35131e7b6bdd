"""Inference, shaped like the diffusers pipelines users know.

    pipe = VideoPipeline.from_pretrained()            # the embedded default model (torch_dtype="bf16", compile=True on a GPU)
    video = pipe("a red circle bouncing", num_frames=16, num_inference_steps=25,
                 guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    video.save("out.mp4")
    pipe("a red circle bouncing", image="first.png")          # image-to-video
    pipe.extend("clip.mp4", "a red circle bouncing", num_frames=64)
    pipe.interpolate("clip.mp4", factor=4)

sampling.py: the denoising loop; inputs.py: user images and videos fitted to the model; windows.py:
which frames each window of a long video or an interpolation generates; video_pipeline.py: the API.
"""
from ..checkpoint import DEFAULT_MODEL
from .sampling import METHODS, KnownFrames, SampleOptions, sample_video
from .video_pipeline import VideoPipeline, VideoPipelineOutput

__all__ = ["DEFAULT_MODEL", "METHODS", "KnownFrames", "SampleOptions", "VideoPipeline", "VideoPipelineOutput",
           "sample_video"]
