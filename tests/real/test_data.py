"""Training data on small real mp4 files: shapes, range, frame sampling, skipping bad videos."""

import json
import logging

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from t2v_turbo_core import data as data_mod
from t2v_turbo_core.data import (
    LatentCaptionDataset,
    VideoCaptionDataset,
    clip_indices,
    collate_video_batch,
    encode_latent_cache,
    frame_stride,
    read_annotations,
)
from t2v_turbo_core.models import VideoVAE

W, H, FRAMES, FPS = 64, 48, 20, 8


def _level(i: int) -> int:
    """Grey level of frame i: the frame index can be read back from the decoded pixels."""
    return 16 + 5 * i


def write_mp4(path, frames=FRAMES, fps=FPS, width=W, height=H):
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qscale": "2"}
        for i in range(frames):
            img = np.full((height, width, 3), _level(i), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def videos(tmp_path):
    write_mp4(tmp_path / "a.mp4")
    write_mp4(tmp_path / "b.mp4", fps=16, frames=40)
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    write_mp4(tmp_path / "short.mp4", frames=3)
    rows = [("a.mp4", "a grey square, fading in"), ("corrupt.mp4", "broken"), ("short.mp4", "too short"),
            ("b.mp4", "the same at 16 fps"), ("missing.mp4", "not there")]  # fmt: skip
    csv = tmp_path / "train.csv"
    csv.write_text("video,caption\n" + "".join(f'{v},"{c}"\n' for v, c in rows))
    return tmp_path, csv


def _mean_levels(pixels: torch.Tensor) -> np.ndarray:
    """Per-frame mean grey level (0-255) of [3, F, H, W] pixels in [-1, 1]."""
    return ((pixels.mean(dim=(0, 2, 3)) + 1) / 2 * 255).numpy()


def test_dataset_yields_clips_at_target_fps_and_skips_bad_videos(videos, caplog):
    root, csv = videos
    ds = VideoCaptionDataset(csv, height=32, width=40, num_frames=8, target_fps=4, random_start=False, on_error="skip")
    assert len(ds) == 5
    with caplog.at_level(logging.WARNING, logger="t2v_turbo_core.data"):
        samples = [ds[i] for i in range(len(ds))]
    good = {s["caption"]: s for s in samples if s is not None}
    assert set(good) == {"a grey square, fading in", "the same at 16 fps"}
    for s in good.values():
        assert s["pixels"].shape == (3, 8, 32, 40) and s["pixels"].dtype == torch.float32
        assert s["pixels"].min() >= -1 and s["pixels"].max() <= 1
        assert s["fps"] == pytest.approx(4.0)
    # 8 fps -> 4 fps: stride 2 from frame 0; 16 fps -> 4 fps: stride 4.
    np.testing.assert_allclose(_mean_levels(good["a grey square, fading in"]["pixels"]), [_level(2 * k) for k in range(8)], atol=4)
    np.testing.assert_allclose(_mean_levels(good["the same at 16 fps"]["pixels"]), [_level(4 * k) for k in range(8)], atol=4)

    assert ds.num_skipped == 3
    assert {p.split("/")[-1] for p in ds.skipped} == {"corrupt.mp4", "short.mp4", "missing.mp4"}
    assert "too short" in ds.skipped[str(root / "short.mp4")]
    assert "not found" in ds.skipped[str(root / "missing.mp4")]
    logged = [r.getMessage() for r in caplog.records if r.name == "t2v_turbo_core.data"]
    assert len(logged) == 3 and all(m.startswith("skipping video") for m in logged)


def test_resample_mode_keeps_batches_full_and_collate_reports_skips(videos):
    _, csv = videos
    ds = VideoCaptionDataset(csv, height=32, width=32, num_frames=4, target_fps=8, seed=1)
    loader = DataLoader(ds, batch_size=5, collate_fn=collate_video_batch)
    batches = list(loader)
    assert len(batches) == 1
    batch = batches[0]
    assert batch["pixels"].shape == (5, 3, 4, 32, 32) and len(batch["captions"]) == 5
    # corrupt -> short -> b (2 skips), short -> b (1), missing -> a (1, wrapping around).
    assert batch["num_skipped"] == 4 and ds.num_skipped == 4
    assert set(batch["captions"]) == {"a grey square, fading in", "the same at 16 fps"}


def test_a_batch_of_only_failures_collates_to_none(videos):
    _, csv = videos
    ds = VideoCaptionDataset(csv, height=16, width=16, num_frames=4, on_error="skip")
    assert collate_video_batch([ds[1], ds[2]]) is None
    assert ds.num_skipped == 2


def test_random_starts_are_seeded_per_index_and_epoch(videos):
    _, csv = videos
    ds = VideoCaptionDataset(csv, height=16, width=16, num_frames=4, target_fps=8, seed=3)
    firsts = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        firsts.append(round(float(_mean_levels(ds[0]["pixels"])[0])))
    ds.set_epoch(0)
    assert round(float(_mean_levels(ds[0]["pixels"])[0])) == firsts[0]  # reproducible
    assert len(set(firsts)) > 1  # and it moves between epochs


def test_pyav_fallback_decodes_the_same_clip(videos, monkeypatch):
    _, csv = videos
    ds = VideoCaptionDataset(csv, height=32, width=40, num_frames=8, target_fps=4, random_start=False, on_error="skip")
    with_decord = ds[0]["pixels"]

    def no_decord(self, path):
        raise ImportError("decord not installed")

    monkeypatch.setattr(data_mod._DecordReader, "__init__", no_decord)
    ds_av = VideoCaptionDataset(csv, height=32, width=40, num_frames=8, target_fps=4, random_start=False, on_error="skip")
    with_pyav = ds_av[0]["pixels"]
    assert with_pyav.shape == with_decord.shape
    torch.testing.assert_close(with_pyav, with_decord, atol=2 / 255 * 2, rtol=0)
    assert ds_av[2] is None and "too short" in next(iter(ds_av.skipped.values()))


def test_annotation_formats_webvid_csv_jsonl_and_errors(tmp_path):
    (tmp_path / "webvid.csv").write_text(
        "videoid,contentUrl,duration,page_dir,name\n"
        "1066678186,https://example.invalid/1066678186.mp4,PT00H00M10S,051401_051450,Aerial shot of a beach\n"
    )
    (rec,) = read_annotations(tmp_path / "webvid.csv", video_root="/data/webvid/videos")
    assert str(rec.path) == "/data/webvid/videos/051401_051450/1066678186.mp4" and rec.caption == "Aerial shot of a beach"

    (tmp_path / "list.jsonl").write_text(json.dumps({"path": "clips/x.mp4", "text": "x"}) + "\n\n" + json.dumps({"video": "/abs/y.mp4", "prompt": "y"}) + "\n")
    recs = read_annotations(tmp_path / "list.jsonl")
    assert [str(r.path) for r in recs] == [str(tmp_path / "clips/x.mp4"), "/abs/y.mp4"] and [r.caption for r in recs] == ["x", "y"]

    (tmp_path / "bad.csv").write_text("file,label\nz.mp4,z\n")
    with pytest.raises(ValueError, match="caption"):
        read_annotations(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError):
        read_annotations(tmp_path / "nope.csv")


def test_frame_sampling_helpers():
    assert frame_stride(24.0, 8) == 3 and frame_stride(30.0, 8) == 4 and frame_stride(6.0, 8) == 1
    assert frame_stride(25.0, None) == 1
    assert clip_indices(20, 8, 2) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert clip_indices(15, 8, 2) == list(range(0, 15, 2))
    with pytest.raises(data_mod.VideoDecodeError, match="too short"):
        clip_indices(14, 8, 2)


def test_latent_cache_round_trip(videos, tmp_path):
    from tests.core.conftest import make_tiny_vae

    _, csv = videos
    ds = VideoCaptionDataset(csv, height=16, width=16, num_frames=4, target_fps=8, random_start=False, on_error="skip")
    vae = VideoVAE(make_tiny_vae(), scaling_factor=0.18215)
    index_path = encode_latent_cache(ds, vae, tmp_path / "cache", shard_size=1, batch_size=2, sample=False)
    index = json.loads(index_path.read_text())
    assert index["num_skipped"] == 3 and len(index["items"]) == 2 and len(index["shards"]) == 2
    assert index["latent_shape"] == [4, 4, 8, 8] and index["scaling_factor"] == pytest.approx(0.18215)

    cached = LatentCaptionDataset(tmp_path / "cache")
    assert len(cached) == 2
    item = cached[1]
    assert item["caption"] == "the same at 16 fps" and item["latents"].shape == (4, 4, 8, 8)
    with torch.no_grad():
        expected = vae.encode(ds[3]["pixels"][None], sample=False)[0]
    torch.testing.assert_close(item["latents"], expected)
    with pytest.raises(FileExistsError):
        encode_latent_cache(ds, vae, tmp_path / "cache")
