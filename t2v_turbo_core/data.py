"""Training data for real distillation runs: video-caption pairs and a cache of VAE latents.

`VideoCaptionDataset` reads an annotation file and decodes clips on demand:

* annotation: a CSV (`.csv`, or `.tsv` tab-separated) with a header row, a JSON Lines file
  (`.jsonl`, one object per line) or a JSON list (`.json`). Accepted columns:
  - the video: `video`, `video_path`, `path`, `relpath` or `file` (a path, absolute or
    relative to `video_root`), or WebVid's `videoid` + `page_dir`, which resolve to
    `{video_root}/{page_dir}/{videoid}.mp4` (WebVid-10M's download layout; VideoCrafter's
    loader adds a `videos/` level: pass `video_root=<data_dir>/videos`). `contentUrl` is
    never fetched: nothing here downloads;
  - the caption: `caption`, `text`, `name` (WebVid) or `prompt`.
  `video_root` defaults to the annotation file's folder.
* decoding: decord (one thread) and, when decord is missing or fails on a file, PyAV.
* frames: `num_frames` frames at `target_fps`: stride = round(native fps / target fps)
  (at least 1; T2V-Turbo's decoder rounds the same way), a window of
  (num_frames - 1) * stride + 1 frames starting at a random frame (seeded per index and
  epoch) or at 0. A video with fewer frames is "too short".
* pixels: resized, aspect kept, so that the frames cover (height, width) (the shorter side
  relative to the target fills it), centre-cropped to exactly (height, width), scaled to
  [-1, 1]: `pixels` is float32 [3, F, H, W] (the VAE's input layout per video).

Failures never raise mid-epoch. A file that is missing, corrupt or too short is logged once
(logger `t2v_turbo_core.data`, WARNING, naming the file and the reason) and counted in
`dataset.num_skipped` / `dataset.skipped` (per process: DataLoader workers keep their own).
`on_error="resample"` (default) then tries the following indices (up to `max_retries`)
so that batches stay full, and the sample records how many it skipped; `on_error="skip"`
returns None. `collate_video_batch` drops Nones and reports every skip of the batch in
`batch["num_skipped"]`, which is how the count reaches the training process even with
workers; it returns None when nothing in the batch could be decoded.

`encode_latent_cache` runs a dataset through a `VideoVAE` into safetensors shards plus an
`index.json` (T2V-Turbo-v2 trains on precomputed latents); `LatentCaptionDataset` reads
them back.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)

VIDEO_COLUMNS = ("video", "video_path", "path", "relpath", "file")
CAPTION_COLUMNS = ("caption", "text", "name", "prompt")
WEBVID_COLUMNS = ("videoid", "page_dir")


class VideoDecodeError(Exception):
    """A video that cannot be used: missing, unreadable, or too short for the clip."""


# ---------------------------------------------------------------------------- annotations


@dataclass(frozen=True)
class VideoRecord:
    path: Path
    caption: str


def _read_rows(annotation: Path) -> list[dict[str, Any]]:
    suffix = annotation.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        with annotation.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{annotation}:{n}: not a JSON object ({err})") from err
        return rows
    if suffix == ".json":
        data = json.loads(annotation.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError(f"{annotation}: expected a JSON list of objects")
        return data
    if suffix in (".csv", ".tsv"):
        with annotation.open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
    raise ValueError(f"{annotation}: unsupported annotation format {suffix!r} (use .csv, .tsv, .jsonl or .json)")


def _first(row: Mapping[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        value = row.get(name)
        if value is not None and str(value).strip() != "":
            return value
    return None


def read_annotations(annotation: str | os.PathLike, video_root: str | os.PathLike | None = None) -> list[VideoRecord]:
    """(video path, caption) records of an annotation file; see the module doc for the columns."""
    annotation = Path(annotation)
    if not annotation.is_file():
        raise FileNotFoundError(f"annotation file not found: {annotation.resolve()}")
    root = Path(video_root) if video_root is not None else annotation.parent
    records = []
    for n, row in enumerate(_read_rows(annotation)):
        if not isinstance(row, Mapping):
            raise ValueError(f"{annotation}: record {n} is not an object")
        caption = _first(row, CAPTION_COLUMNS)
        video = _first(row, VIDEO_COLUMNS)
        if video is None and all(_first(row, (c,)) is not None for c in WEBVID_COLUMNS):
            video = Path(str(row["page_dir"])) / f"{row['videoid']}.mp4"
        if video is None or caption is None:
            raise ValueError(
                f"{annotation}: record {n} needs a video ({'/'.join(VIDEO_COLUMNS)} or videoid+page_dir) "
                f"and a caption ({'/'.join(CAPTION_COLUMNS)}); it has {sorted(row)}"
            )
        path = Path(str(video)).expanduser()
        records.append(VideoRecord(path if path.is_absolute() else root / path, str(caption)))
    return records


# ---------------------------------------------------------------------------- decoding


def frame_stride(native_fps: float, target_fps: float | None) -> int:
    """Frames of the source between two sampled frames: round(native / target), at least 1."""
    if target_fps is None or native_fps <= 0:
        return 1
    return max(1, int(round(native_fps / target_fps)))


def clip_indices(total: int, num_frames: int, stride: int, start: int | None = None, rng: random.Random | None = None) -> list[int]:
    """`num_frames` indices `stride` apart inside `total` frames; random start if `rng`, else `start` or 0."""
    span = (num_frames - 1) * stride + 1
    if total < span:
        raise VideoDecodeError(f"too short: {total} frames, the clip needs {span} ({num_frames} frames at stride {stride})")
    last = total - span
    if start is None:
        start = rng.randint(0, last) if rng is not None else 0
    start = min(max(0, start), last)
    return [start + i * stride for i in range(num_frames)]


class _DecordReader:
    def __init__(self, path: Path):
        import decord

        try:
            self.reader = decord.VideoReader(str(path), num_threads=1)
        except Exception as err:  # decord raises its own DECORDError / RuntimeError
            raise VideoDecodeError(f"decord cannot open it ({str(err).splitlines()[0][:200]})") from err
        self.fps = float(self.reader.get_avg_fps())
        self.num_frames = len(self.reader)

    def frames(self, indices: list[int]) -> np.ndarray:
        return self.reader.get_batch(indices).asnumpy()  # [F, H, W, 3] uint8


class _PyAVReader:
    """Sequential decoding; only the frames asked for are kept."""

    def __init__(self, path: Path):
        import av

        self.path = path
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                self.fps = float(rate) if rate else 0.0
                # The container's frame count when it has one, else count the packets.
                self.num_frames = int(stream.frames) or sum(1 for p in container.demux(stream) if p.size)
        except Exception as err:
            raise VideoDecodeError(f"PyAV cannot open it ({str(err)[:200]})") from err

    def frames(self, indices: list[int]) -> np.ndarray:
        import av

        wanted = set(indices)
        got: dict[int, np.ndarray] = {}
        with av.open(str(self.path)) as container:
            for i, frame in enumerate(container.decode(container.streams.video[0])):
                if i in wanted:
                    got[i] = frame.to_ndarray(format="rgb24")
                if i >= indices[-1]:
                    break
        if len(got) != len(wanted):
            raise VideoDecodeError(f"too short: the stream ended before frame {indices[-1]}")
        return np.stack([got[i] for i in indices])


def _open_video(path: Path) -> Any:
    if not path.is_file():
        raise VideoDecodeError("file not found")
    try:
        return _DecordReader(path)
    except ImportError:
        return _PyAVReader(path)
    except VideoDecodeError as first:
        try:
            return _PyAVReader(path)
        except VideoDecodeError as second:
            raise VideoDecodeError(f"{first}; {second}") from second


def resize_cover_and_center_crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[F, 3, h, w] -> [F, 3, height, width]: aspect-preserving resize that covers the target
    (bilinear, antialiased), then a centre crop."""
    h, w = frames.shape[-2:]
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    if (new_h, new_w) != (h, w):
        frames = F.interpolate(frames, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return frames[..., top : top + height, left : left + width]


# ---------------------------------------------------------------------------- dataset


class VideoCaptionDataset(Dataset):
    """Video-caption pairs decoded to `pixels` [3, F, H, W] in [-1, 1]; see the module doc."""

    def __init__(
        self,
        annotation: str | os.PathLike,
        height: int,
        width: int,
        num_frames: int = 16,
        target_fps: float | None = 8.0,
        video_root: str | os.PathLike | None = None,
        random_start: bool = True,
        seed: int = 0,
        on_error: str = "resample",
        max_retries: int = 10,
    ):
        if on_error not in ("resample", "skip"):
            raise ValueError(f"on_error must be 'resample' or 'skip', got {on_error!r}")
        if num_frames < 1 or height < 1 or width < 1:
            raise ValueError("num_frames, height and width must be positive")
        self.records = read_annotations(annotation, video_root)
        self.height, self.width, self.num_frames = height, width, num_frames
        self.target_fps = target_fps
        self.random_start = random_start
        self.seed = seed
        self.epoch = 0
        self.on_error = on_error
        self.max_retries = max_retries
        self.skipped: dict[str, str] = {}  # path -> reason, this process only
        self.num_skipped = 0

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Changes the random clip starts (call it at the start of every epoch)."""
        self.epoch = epoch

    def load(self, index: int) -> dict[str, Any]:
        """Decode record `index`; raises `VideoDecodeError` for an unusable video."""
        record = self.records[index]
        reader = _open_video(record.path)
        stride = frame_stride(reader.fps, self.target_fps)
        rng = random.Random(hash((self.seed, self.epoch, index))) if self.random_start else None
        indices = clip_indices(reader.num_frames, self.num_frames, stride, rng=rng)
        try:
            array = reader.frames(indices)
        except Exception as err:
            raise VideoDecodeError(f"reading frames failed ({str(err)[:200]})") from err
        if array.ndim != 4 or array.shape[0] != self.num_frames or array.shape[-1] != 3:
            raise VideoDecodeError(f"decoded frames have shape {array.shape}")
        frames = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).float() / 255.0
        frames = resize_cover_and_center_crop(frames, self.height, self.width).clamp(0, 1)
        return {
            "pixels": (frames * 2 - 1).permute(1, 0, 2, 3).contiguous(),
            "caption": record.caption,
            "path": str(record.path),
            "fps": reader.fps / stride if reader.fps > 0 else float("nan"),
        }

    def _record_failure(self, index: int, err: Exception) -> None:
        key = str(self.records[index].path)
        self.num_skipped += 1
        if key not in self.skipped:
            self.skipped[key] = str(err)
            logger.warning("skipping video %s: %s", key, err)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        tries = 1 if self.on_error == "skip" else self.max_retries + 1
        failures = 0
        for attempt in range(tries):
            i = (index + attempt) % len(self.records)
            try:
                sample = self.load(i)
            except VideoDecodeError as err:
                self._record_failure(i, err)
                failures += 1
                continue
            except Exception as err:  # an unexpected decoder error must not end the epoch either
                self._record_failure(i, VideoDecodeError(f"{type(err).__name__}: {err}"))
                failures += 1
                continue
            sample["num_skipped"] = failures
            return sample
        return None


def collate_video_batch(samples: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Stack decoded samples; drop failures (None). `num_skipped`: every skip behind this batch."""
    good = [s for s in samples if s is not None]
    skipped = sum(1 for s in samples if s is None) + sum(int(s.get("num_skipped", 0)) for s in good)
    if not good:
        logger.warning("a whole batch of %d videos failed to decode", len(samples))
        return None
    return {
        "pixels": torch.stack([s["pixels"] for s in good]),
        "captions": [s["caption"] for s in good],
        "paths": [s["path"] for s in good],
        "num_skipped": skipped,
    }


# ---------------------------------------------------------------------------- latent cache


def _as_list(samples: list) -> list:
    return samples


LATENT_INDEX = "index.json"
LATENT_FORMAT = "t2v-turbo-bench/latents"


def encode_latent_cache(
    dataset: Dataset,
    vae: Any,
    out_dir: str | os.PathLike,
    shard_size: int = 256,
    batch_size: int = 1,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    sample: bool = True,
    seed: int = 0,
    store_dtype: torch.dtype = torch.float32,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Encode every decodable video of `dataset` with `vae` (a `VideoVAE`) into `out_dir`.

    Writes `shard-00000.safetensors`, ... (one tensor `latents` [N, C, F, h, w], already
    multiplied by the VAE's scaling factor) and `index.json` (written last, so a folder with
    an index is complete): format, scaling factor, latent shape, whether latents were
    sampled from the posterior (T2V-Turbo-v2's preprocessing samples) or are its mean, the
    shards, and one item per video (shard, row, caption, source path). Failed videos are
    skipped and counted (`num_skipped`). `progress(done, total)` is called after each batch.
    """
    from safetensors.torch import save_file
    from torch.utils.data import DataLoader

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / LATENT_INDEX).exists():
        raise FileExistsError(f"{out / LATENT_INDEX} exists: refusing to overwrite a latent cache")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_as_list)
    generator = torch.Generator().manual_seed(seed)
    vae_module = getattr(vae, "vae", vae)
    if device is None:
        device = next(vae_module.parameters()).device

    shards: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    pending: list[torch.Tensor] = []
    pending_meta: list[tuple[str, str]] = []
    num_skipped = 0
    latent_shape: list[int] | None = None

    def flush() -> None:
        if not pending:
            return
        name = f"shard-{len(shards):05d}.safetensors"
        save_file({"latents": torch.stack(pending).contiguous()}, str(out / name), metadata={"format": LATENT_FORMAT})
        for row, (caption, source) in enumerate(pending_meta):
            items.append({"shard": len(shards), "row": row, "caption": caption, "source": source})
        shards.append({"file": name, "rows": len(pending)})
        pending.clear()
        pending_meta.clear()

    done = 0
    for samples in loader:
        done += len(samples)
        batch = collate_video_batch(samples)
        if batch is None:
            num_skipped += len(samples)
            continue
        num_skipped += batch["num_skipped"]
        with torch.no_grad():
            latents = vae.encode(batch["pixels"].to(device=device, dtype=dtype), sample=sample, generator=generator)
        for lat, caption, source in zip(latents.to("cpu", store_dtype), batch["captions"], batch["paths"]):
            latent_shape = list(lat.shape)
            pending.append(lat)
            pending_meta.append((caption, source))
            if len(pending) == shard_size:
                flush()
        if progress is not None:
            progress(min(done, len(dataset)), len(dataset))
    flush()

    index = {
        "format": LATENT_FORMAT,
        "version": 1,
        "scaling_factor": float(getattr(vae, "scaling_factor", 1.0)),
        "latent_shape": latent_shape,
        "sampled": sample,
        "seed": seed,
        "dtype": str(store_dtype).replace("torch.", ""),
        "num_skipped": num_skipped,
        "shards": shards,
        "items": items,
    }
    tmp = out / (LATENT_INDEX + ".tmp")
    tmp.write_text(json.dumps(index, indent=1))
    tmp.replace(out / LATENT_INDEX)
    if num_skipped:
        logger.warning("latent cache %s: %d videos skipped", out, num_skipped)
    return out / LATENT_INDEX


class LatentCaptionDataset(Dataset):
    """Reads a folder written by `encode_latent_cache`: {"latents" [C, F, h, w] float32, "caption", "path"}."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        index_path = self.folder / LATENT_INDEX
        if not index_path.is_file():
            raise FileNotFoundError(f"latent cache index not found: {index_path.resolve()}")
        self.index = json.loads(index_path.read_text())
        if self.index.get("format") != LATENT_FORMAT:
            raise ValueError(f"{index_path}: not a latent cache (format {self.index.get('format')!r})")
        self.items = self.index["items"]
        self.scaling_factor = float(self.index["scaling_factor"])
        for shard in self.index["shards"]:
            if not (self.folder / shard["file"]).is_file():
                raise FileNotFoundError(f"latent shard missing: {(self.folder / shard['file']).resolve()}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from safetensors import safe_open

        item = self.items[index]
        shard = self.folder / self.index["shards"][item["shard"]]["file"]
        # Only this row is read from the (memory-mapped) shard.
        with safe_open(str(shard), framework="pt") as f:
            latents = f.get_slice("latents")[item["row"] : item["row"] + 1][0]
        return {"latents": latents.float(), "caption": item["caption"], "path": item["source"]}


__all__ = [
    "LatentCaptionDataset",
    "VideoCaptionDataset",
    "VideoDecodeError",
    "VideoRecord",
    "clip_indices",
    "collate_video_batch",
    "encode_latent_cache",
    "frame_stride",
    "read_annotations",
    "resize_cover_and_center_crop",
]
