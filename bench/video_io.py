"""Writing and reading the mp4 files that VBench and `bench score` read.

Files are H.264 in an mp4 container, written by PyAV (FFmpeg) at the model's fps, readable by
decord and OpenCV (VBench reads with both). Below 128 pixels (the tiny world's 32x32)
4:2:0 chroma subsampling would smear object colours over half the object, so small videos
are written 4:4:4 and lossless (crf 0); real resolutions use the usual yuv420p at crf 17.
A file is written under a temporary name and renamed into place, so an interrupted run never
leaves a truncated video under its final name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from bench.errors import BenchError

TMP_SUFFIX = ".partial.mp4"


class VideoReadError(BenchError, RuntimeError):
    """A video that cannot be decoded (exit 2)."""


def encoding_for(height: int, width: int, pix_fmt: str = "auto", crf: int | None = None) -> tuple[str, int]:
    if pix_fmt == "auto":
        pix_fmt = "yuv444p" if min(height, width) < 128 else "yuv420p"
    if crf is None:
        crf = 0 if pix_fmt == "yuv444p" else 17
    return pix_fmt, crf


def write_mp4(path: str | Path, frames: np.ndarray, fps: int, pix_fmt: str = "auto", crf: int | None = None) -> Path:
    """frames: uint8 [F, H, W, 3] RGB. Written atomically (temp file, then rename)."""
    import av

    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [F, H, W, 3], got {frames.dtype} {frames.shape}")
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        raise ValueError(f"H.264 needs even sizes, got {h}x{w}")
    pix_fmt, crf = encoding_for(h, w, pix_fmt, crf)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name[: -len(".mp4")] + TMP_SUFFIX if path.name.endswith(".mp4") else path.name + TMP_SUFFIX)
    try:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=int(fps))
            stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
            stream.options = {"crf": str(crf)}
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def probe_video(path: str | Path) -> int:
    """The frame count the file's header states; VideoReadError for an empty, cut or non-video file.

    Cheap (the container header only, no decoding) and silent: PyAV keeps FFmpeg's log off,
    whereas decord lets FFmpeg print "moov atom not found" for a cut mp4 before failing.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoReadError(f"video not found: {path}")
    if path.stat().st_size == 0:
        raise VideoReadError(f"cannot decode video {path}: the file is empty (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(f"cannot decode video {path}: cut short or corrupt (no video stream in its header)")
            stream = container.streams.video[0]
            frames = int(stream.frames or 0)
    except VideoReadError:
        raise
    except Exception as err:  # noqa: BLE001 - any container failure is a damaged file to the caller
        why = getattr(err, "strerror", None) or str(err)
        raise VideoReadError(f"cannot decode video {path}: cut short or not a video container ({why})") from None
    if frames <= 0:
        raise VideoReadError(f"cannot decode video {path}: cut short or corrupt (its header lists no frames)")
    return frames


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
    """uint8 [F, H, W, 3] RGB and fps; decord first (VBench's reader), PyAV as fallback.

    Raises VideoReadError for a missing, empty or undecodable file (checked by `probe_video`
    first, so that a damaged file gives one clean error, not FFmpeg's log lines).
    """
    path = Path(path)
    probe_video(path)
    try:
        import decord

        vr = decord.VideoReader(str(path))
        n = len(vr)
        if n == 0:
            raise VideoReadError(f"video has no frames: {path}")
        return vr.get_batch(list(range(n))).asnumpy(), float(vr.get_avg_fps())
    except VideoReadError:
        raise
    except Exception:
        pass
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            fps = float(stream.average_rate or 0)
    except Exception as err:  # noqa: BLE001 - any decoder failure is a corrupt file to the caller
        raise VideoReadError(f"cannot decode video {path}: {err}") from err
    if not frames:
        raise VideoReadError(f"video has no frames: {path}")
    return np.stack(frames), fps


def video_to_tensor(frames: np.ndarray):
    """uint8 [F, H, W, 3] -> float [F, 3, H, W] in [0, 1]."""
    import torch

    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0


def tensor_to_video(video) -> np.ndarray:
    """float [F, 3, H, W] in [0, 1] -> uint8 [F, H, W, 3]."""
    return (video.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
