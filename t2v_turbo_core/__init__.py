"""t2v_turbo_core: T2V-Turbo as a library.

Video consistency distillation of a text-to-video teacher into a few-step student,
with mixed reward feedback from image-text and video-text reward models through the
single-step prediction (Li et al., T2V-Turbo, NeurIPS 2024). Small pure pieces; no CLI,
no printing, no global state. Never imports `bench`.
"""

__version__ = "0.1.0"
