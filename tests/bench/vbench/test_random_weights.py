"""Every dimension we can, through `bench score vbench` and the real vbench 0.1.5, with random weights.

No weights can be downloaded here, so tests/helpers/vbench_random_evaluators.py writes random-weight
files in VBench's layouts with VBench's (and its dependencies') own model classes, inside the
VBench env. Each test then scores a handful of tiny videos for one dimension, with a reduced
full-info file passed by `--full-info` (the harness passes the real one the same way), and
checks VBench's result file (one entry per video, a finite aggregate) and the provenance.
The numbers mean nothing (random weights); the plumbing is what is proven.

The VBench env is created on first use (minutes, once; reused through its stamp).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.vbench import env as vbench_env
from bench.vbench import suite
from tests.bench.vbench.test_adapter import _write_mp4  # lossless mp4s, one writer for the VBench tests

REPO = Path(__file__).resolve().parents[3]
MAKER = REPO / "tests" / "helpers" / "vbench_random_evaluators.py"
TIMINGS = os.environ.get("BENCH_VBENCH_TIMINGS")  # optional jsonl: seconds per dimension, for the README

# dimension -> the random evaluator files it reads
NEEDS = {
    "motion_smoothness": ["amt"],
    "dynamic_degree": ["raft"],
    "background_consistency": ["clip_b32"],
    "appearance_style": ["clip_b32"],
    "aesthetic_quality": ["clip_l14", "aesthetic"],
    "imaging_quality": ["musiq"],
    "temporal_style": ["bpe", "viclip"],
    "overall_consistency": ["bpe", "viclip"],
    "human_action": ["umt"],
    "subject_consistency": ["dino"],
    "scene": ["tag2text"],
    "object_class": ["grit"],
    "multiple_objects": ["grit"],
    "color": ["grit"],
    "spatial_relationship": ["grit"],
    "temporal_flickering": ["raft"],  # the static filter's RAFT
}
# What CI runs besides the AMT-S loading check and custom_input (about a minute on 2 cores);
# the rest is `slow` (`make test-vbench` runs them all). Times per dimension: the README's table.
CHEAP = {"motion_smoothness"}


# (prompts, videos per prompt): GRiT runs ViT-B at 1024 pixels on 16 frames of each video.
# ViT-L (UMT, ViCLIP), Swin-B/384 + BERT (Tag2Text) and ViT-B/16 (DINO): one prompt, two videos.
SIZES = {d: (1, 1) for d in ("object_class", "multiple_objects", "color", "spatial_relationship")}
SIZES.update({d: (1, 2) for d in ("human_action", "temporal_style", "overall_consistency", "scene",
                                  "subject_consistency")})


def _ram_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def _param(d: str):
    marks = [] if d in CHEAP else [pytest.mark.slow]
    if d == "scene":
        # Seen on the 24 GB build machine: VBench's scene (Tag2Text Swin-B/384 on all 16 frames
        # of a video in one batch) grew past 18 GB resident and the OOM killer ended it.
        marks.append(pytest.mark.skipif(_ram_gib() < 32, reason="scene needs more than ~20 GB of RAM on CPU"))
    return pytest.param(d, marks=marks)


def _moving_frames(seed: int, n: int = 8, size: int = 64, step: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size, size * 2, 3), dtype=np.uint8)
    return [np.ascontiguousarray(base[:, k * step: k * step + size]) for k in range(n)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The VBench env, a cache to write random evaluators into, and the caches' variables."""
    env = vbench_env.ensure_env()
    root = tmp_path_factory.mktemp("vbench-random")
    caches = {"VBENCH_CACHE_DIR": root / "vbench-cache", "TORCH_HOME": root / "torch-home",
              "HF_HOME": root / "hf-home"}
    return {"env": env, "root": root, "caches": caches, "made": {}}


def _make(world, names: list[str]) -> None:
    """Write the random evaluator files `names` (once per module) with the VBench env's python."""
    todo = [n for n in dict.fromkeys(names) if n not in world["made"]]
    if not todo:
        return
    if "grit" in todo:  # GRiT's model classes are built with detectron2, which the harness installs
        vbench_env.ensure_detectron2(world["env"])
    c = world["caches"]
    child = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [str(world["env"].python), str(MAKER), "--cache", str(c["VBENCH_CACHE_DIR"]),
         "--torch-home", str(c["TORCH_HOME"]), "--hf-home", str(c["HF_HOME"]), *todo],
        env=child, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            world["made"][r["name"]] = r
    assert set(todo) <= set(world["made"])


def _reduced_full_info(path: Path, dimension: str, n_prompts: int) -> list[str]:
    """The first `n_prompts` entries of VBench's own json for `dimension`, as they are."""
    entries = [e for e in suite.load_full_info() if dimension in e["dimension"]][:n_prompts]
    path.write_text(json.dumps(entries))
    return [e["prompt_en"] for e in entries]


def _score(world, tmp_path: Path, dimension: str, extra: list[str] = (), n_prompts: int = 2,
           n_videos: int = 2, oversample: int = 0):
    _make(world, NEEDS.get(dimension, []))
    full_info = tmp_path / "reduced_full_info.json"
    prompts = _reduced_full_info(full_info, dimension, n_prompts)
    videos = tmp_path / "videos"
    videos.mkdir()
    k = 0
    for p in prompts:
        for i in range(oversample or n_videos):
            frames = _moving_frames(k, step=0 if (oversample and i % 3 == 0) else 2)
            _write_mp4(videos / f"{p}-{i}.mp4", frames)
            k += 1
    (videos / "manifest.jsonl").write_text("{}\n")  # as `bench generate` leaves it
    out = tmp_path / "out"
    env = dict(os.environ, COLUMNS="200", **{k: str(v) for k, v in world["caches"].items()})
    cmd = [sys.executable, "-m", "bench", "score", "vbench", "--videos-dir", str(videos), "-d", dimension,
           "--device", "cpu", "--full-info", str(full_info), "--out", str(out),
           # random files cannot have the published sha256 (CLIP, MUSIQ); every other check stays
           "--skip-hash-check", *extra]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    raw = json.loads((out / f"{dimension}_eval_results.json").read_text())
    aggregate, per_video = raw[dimension]
    assert math.isfinite(aggregate)
    rec = json.loads((out / ".bench" / "scoring.json").read_text())["dimensions"][dimension]
    assert rec["status"] == "complete" and rec["device"] == "cpu"
    assert rec["inputs"]["torch_env"] == {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    assert rec["inputs"]["vbench"] == "0.1.5" and rec["inputs"]["torch"] == "2.14.1"
    assert rec["aggregate"] == aggregate
    if TIMINGS:
        with open(TIMINGS, "a") as f:
            f.write(json.dumps({"dimension": dimension, "seconds": rec["seconds"],
                                "videos": len(per_video)}) + "\n")
    return {"aggregate": aggregate, "per_video": per_video, "record": rec, "out": out, "videos": videos,
            "prompts": prompts, "stderr": proc.stderr}


@pytest.mark.integration
def test_the_random_amt_checkpoint_is_refused_by_torchs_default_loading(world):
    """The random AMT-S file carries what real training checkpoints carry; torch 2.14's default
    weights_only=True load refuses it, as it refuses the published amt-s.pth (vbench 0.1.5 uses
    a bare torch.load). The harness's TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 is what lets it load."""
    _make(world, ["amt"])
    path = world["made"]["amt"]["path"]
    child = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    code = f"import torch; torch.load({path!r}, map_location='cpu')"
    refused = subprocess.run([str(world["env"].python), "-c", code], env=child, capture_output=True, text=True)
    assert refused.returncode != 0 and "weights_only" in refused.stderr
    allowed = subprocess.run([str(world["env"].python), "-c", code],
                             env=dict(child, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1"), capture_output=True, text=True)
    assert allowed.returncode == 0, allowed.stderr


@pytest.mark.integration
@pytest.mark.parametrize("dimension", [_param(d) for d in NEEDS if d not in ("temporal_flickering", "color")])
def test_dimension_scores_through_the_harness_with_random_weights(world, tmp_path, dimension):
    n_prompts, n_videos = SIZES.get(dimension, (2, 2))
    r = _score(world, tmp_path, dimension, n_prompts=n_prompts, n_videos=n_videos)
    assert len(r["per_video"]) == n_prompts * n_videos  # one entry per video
    names = sorted(Path(v["video_path"]).name for v in r["per_video"])
    assert names == sorted(f"{p}-{i}.mp4" for p in r["prompts"] for i in range(n_videos))
    assert all(Path(v["video_path"]).parent == r["videos"].resolve() for v in r["per_video"])
    assert all(math.isfinite(v["video_results"]) for v in r["per_video"])
    if dimension in ("object_class", "multiple_objects", "color", "spatial_relationship"):
        assert r["record"]["inputs"]["vbench"] == "0.1.5"
        d2 = json.loads((r["out"] / ".bench" / "scoring.json").read_text())["detectron2"]
        assert d2["source"].startswith("sal-detectron2==0.7.2") and d2["dropped"]


@pytest.mark.integration
@pytest.mark.slow
def test_color_runs_grit_on_every_frame_then_vbench_divides_by_zero(world, tmp_path):
    """color has no per-frame try/except (object_class has), so reaching its aggregate proves GRiT's
    inference ran on every frame. A random GRiT detects no object, and vbench 0.1.5's color.py
    then divides by the number of videos with a detection, 0: the harness reports VBench's
    ZeroDivisionError as that dimension's failure, with the traceback's end."""
    with pytest.raises(AssertionError) as failed:
        _score(world, tmp_path, "color", n_prompts=1, n_videos=1)
    text = str(failed.value)
    assert "VBench failed on color (exit 1)" in text
    assert "success_rate = success_frame_count_all / video_count" in text and "ZeroDivisionError" in text


@pytest.mark.integration
@pytest.mark.slow
def test_temporal_flickering_with_vbenchs_static_filter_on_random_raft(world, tmp_path):
    """25 samples of one prompt go through VBench's static filter (its code, on CPU); the kept
    ones are scored into the same folder and the provenance says how many the prompt kept."""
    r = _score(world, tmp_path, "temporal_flickering", n_prompts=1, oversample=25)
    filt = r["record"]["static_filter"]
    assert filt["ran"] is True and filt["sampled_per_prompt"] == {r["prompts"][0]: 25}
    kept = filt["kept_per_prompt"][r["prompts"][0]]
    # The random RAFT's flow head is zeroed: every video is static, so the first 5 are kept.
    assert kept == 5 and len(r["per_video"]) == kept
    assert "hard-codes CUDA" in r["stderr"]
    filtered = r["out"] / ".bench" / "static_filter" / "filtered_videos"
    prompt = r["prompts"][0]
    assert sorted(p.name for p in filtered.iterdir()) == [f"{prompt}-{i}.mp4" for i in range(kept)]
    # VBench scans in plain string order: -0, -1, -10, -11, -12 are the first five.
    for k, src in enumerate((0, 1, 10, 11, 12)):
        assert (filtered / f"{prompt}-{k}.mp4").read_bytes() == (r["videos"] / f"{prompt}-{src}.mp4").read_bytes()
    info = json.loads((r["out"] / ".bench" / "static_filter" / "filtered_static_video.json").read_text())
    assert info[r["prompts"][0]]["static_count"] == kept


@pytest.mark.integration
def test_custom_input_prompt_file_videos_with_the_real_vbench(world, tmp_path):
    """Videos of `bench generate --prompt-file` (own prompts, a manifest) in custom_input mode."""
    videos = tmp_path / "custom"
    videos.mkdir()
    prompts = {"a lighthouse at dusk, slow pan-0.mp4": "a lighthouse at dusk, slow pan",
               "a lighthouse at dusk, slow pan-1.mp4": "a lighthouse at dusk, slow pan",
               "ink drops in water-0.mp4": "ink drops in water"}
    for k, name in enumerate(prompts):
        _write_mp4(videos / name, _moving_frames(k))
    (videos / "manifest.jsonl").write_text(
        "".join(json.dumps({"file": n, "prompt": p, "index": int(n[-5])}) + "\n" for n, p in prompts.items()))
    out = tmp_path / "out"
    env = dict(os.environ, COLUMNS="200", **{k: str(v) for k, v in world["caches"].items()})
    cmd = [sys.executable, "-m", "bench", "score", "vbench", "--videos-dir", str(videos), "--mode", "custom_input",
           "-d", "temporal_flickering", "--device", "cpu", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    aggregate, per_video = json.loads((out / "temporal_flickering_eval_results.json").read_text())["temporal_flickering"]
    assert math.isfinite(aggregate)
    assert sorted(Path(v["video_path"]).name for v in per_video) == sorted(prompts)
    info = json.loads((out / "temporal_flickering_full_info.json").read_text())
    assert sorted(e["prompt_en"] for e in info) == sorted(prompts.values())  # from the manifest
    rec = json.loads((out / ".bench" / "scoring.json").read_text())["dimensions"]["temporal_flickering"]
    assert rec["inputs"]["mode"] == "custom_input" and rec["static_filter"]["ran"] is False
