"""`bench generate`: VBench's file plan, decodable videos, seeds, resume after a kill, sharding.

Models are random-weight stand-ins (tests/helpers/tinyworld.py); each test takes seconds,
except the two that start fresh interpreters (kill/resume and accelerate), which pay for
importing torch in every process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.helpers.cli import verb_app
from bench import generate as G
from bench.vbench import suite as vbench_suite
from bench.tinyworld.suite import tiny_suite
from tests.helpers.tinyworld import make_random_run, make_random_zoo
from bench.video_io import TMP_SUFFIX, read_video

REPO = Path(__file__).resolve().parents[3]
FRAMES, SIZE = 8, 32  # the tiny world's videos


@pytest.fixture(scope="session")
def zoo(tmp_path_factory):
    return make_random_zoo(tmp_path_factory.mktemp("generate_zoo") / "zoo")


@pytest.fixture(scope="session")
def run_dir(zoo, tmp_path_factory):
    return make_random_run(tmp_path_factory.mktemp("generate_run") / "run", zoo)


@pytest.fixture(scope="session")
def loaded(run_dir):
    from bench.runs import load_run_student

    bundle, student, _ = load_run_student(run_dir)
    return bundle, student


def cli(args: list[str]):
    # A one-verb app: the test does not depend on which other verbs are registered.
    return CliRunner().invoke(verb_app(G), ["generate", *args])


def said(res) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(res.output.split())


def child_env(**extra: str) -> dict:
    # Fresh interpreters on a shared 2-core machine: one thread each.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


def planned(items, videos_per_prompt: int) -> set[str]:
    return {v.file for v in G.plan_videos(G.as_suite_items(items), videos_per_prompt)}


def assert_decodable(path: Path) -> None:
    import cv2
    import decord

    vr = decord.VideoReader(str(path))
    assert len(vr) == FRAMES and vr[0].shape == (SIZE, SIZE, 3), path
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == FRAMES and frames[0].shape == (SIZE, SIZE, 3), path


# --------------------------------------------------------------------------- plan, no model


def test_dry_run_lists_vbench_standard_plan_and_flicker_extras_without_building_a_model(monkeypatch):
    def no_models(self, *a, **k):
        raise AssertionError("--dry-run built a torch module")

    monkeypatch.setattr(torch.nn.Module, "__init__", no_models)
    res = cli(["--suite", "vbench", "--dry-run"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len(lines) == 4720 == len(set(lines))
    assert lines == vbench_suite.planned_video_files()
    assert all(f"{e.prompt}-{i}.mp4" in set(lines) for e in vbench_suite.load_vbench_suite() for i in range(5))

    res = cli(["--suite", "vbench", "--dry-run", "--flicker-oversample"])
    assert res.exit_code == 0, res.output
    over = res.stdout.splitlines()
    assert over == vbench_suite.planned_video_files(oversample_temporal_flickering=True)
    extras = set(over) - set(lines)
    flicker = {e.prompt for e in vbench_suite.load_vbench_suite(["temporal_flickering"])}
    assert len(over) == 6220 and len(extras) == 1500 == len(flicker) * 20
    assert extras == {f"{p}-{i}.mp4" for p in flicker for i in range(5, 25)}


def test_shards_partition_the_plan_and_seeds_depend_only_on_prompt_and_index():
    plan = G.plan_videos(G.as_suite_items(tiny_suite()), 5)
    assert len(plan) == 61 * 5
    shards = [G.shard_plan(plan, (k, 3)) for k in range(3)]
    files = [v.file for s in shards for v in s]
    assert sorted(files) == sorted(v.file for v in plan) and len(files) == len(set(files))
    assert G.video_seed(7, "a red square", 2) == G.video_seed(7, "a red square", 2)
    assert len({G.video_seed(7, "a red square", i) for i in range(5)} | {G.video_seed(8, "a red square", 0)}) == 6


def test_prompt_that_cannot_be_a_file_name_fails_before_any_model_is_loaded(tmp_path, monkeypatch):
    import bench.runs

    def boom(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(bench.runs, "load_run_student", boom)
    monkeypatch.setattr(bench.runs, "load_teacher", boom)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red square\na red/blue square\n")
    out = tmp_path / "out"
    for args in (["--run", str(tmp_path / "run")], ["--teacher", "--config", "tiny"]):
        res = cli([*args, "--prompt-file", str(prompts), "--out", str(out)])
        assert res.exit_code == 2, res.output
        assert "'a red/blue square'" in said(res) and "file name" in said(res)
    assert not out.exists()
    # The Python API checks names before it touches the model or the folder as well.
    with pytest.raises(G.GenerateError, match="file name"):
        G.generate_videos(None, None, ["fine", "x" * 300], out, sampler="teacher", steps=2)
    assert not out.exists()


def test_bad_inputs_exit_2_and_write_nothing(tmp_path, run_dir):
    no_student = tmp_path / "unfinished"
    no_student.mkdir()
    shutil.copy(run_dir / "run.json", no_student / "run.json")
    out = tmp_path / "out"
    cases = {
        "run directory not found": ["--run", str(tmp_path / "missing"), "--suite", "tiny"],
        "no final student": ["--run", str(no_student), "--suite", "tiny"],
        "unknown suite": ["--run", str(run_dir), "--suite", "vbenchh"],
        "--steps 0": ["--run", str(run_dir), "--suite", "tiny", "--steps", "0"],
        "--steps 51": ["--run", str(run_dir), "--suite", "tiny", "--steps", "51"],
        "teacher DDIM steps": ["--teacher", "--config", "tiny", "--suite", "tiny", "--steps", "1001"],
        "unknown VBench dimension": ["--run", str(run_dir), "--suite", "vbench", "--dimension", "colour"],
        "--run RUN is required": ["--suite", "tiny"],
    }
    for needle, args in cases.items():
        res = cli([*args, "--out", str(out)])
        assert res.exit_code == 2, (needle, res.output)
        assert needle in said(res), (needle, res.output)
    res = cli(["--run", str(no_student), "--suite", "tiny"])  # default output folder
    assert res.exit_code == 2
    assert not out.exists() and not (no_student / "videos").exists()


# --------------------------------------------------------------------------- generation


@pytest.mark.parametrize("sampler,steps", [("student", 1), ("student", 2), ("student", 4), ("student", 8), ("teacher", 50)])
def test_students_and_teacher_write_decodable_videos_with_exact_timesteps_and_nfe(loaded, tmp_path, sampler, steps):
    bundle, student = loaded
    items = tiny_suite(["color"])[:2]
    unet = student if sampler == "student" else bundle.unet
    summary = G.generate_videos(
        bundle, unet, items, tmp_path, sampler=sampler, steps=steps, videos_per_prompt=1, seed=5, batch_size=2,
        model_label="test",
    )
    assert summary.generated == 2 and summary.skipped == 0
    records = G.read_manifest(tmp_path)
    assert set(records) == planned(items, 1) == {p.name for p in tmp_path.glob("*.mp4")}
    for name, rec in records.items():
        assert_decodable(tmp_path / name)
        assert rec["sampler"] == sampler and rec["steps"] == steps and len(rec["timesteps"]) == steps
        assert rec["nfe"] == (steps if sampler == "student" else 2 * steps)
        assert rec["seed"] == G.video_seed(5, rec["prompt"], rec["index"]) and rec["base_seed"] == 5
        assert rec["seconds"] > 0 and rec["device"] == "cpu" and rec["dtype"] == "float32" and rec["model_label"] == "test"
        assert rec["guidance_scale"] == 7.5  # student: embedded w; tiny teacher: its CFG scale
    if (sampler, steps) == ("student", 4):
        assert all(r["timesteps"] == [999, 759, 519, 279] for r in records.values())
    if sampler == "teacher":
        assert all(r["nfe"] == 100 and r["timesteps"][0] == 999 and r["timesteps"][-1] == 19 for r in records.values())
    gen = json.loads((tmp_path / G.GENERATION_NAME).read_text())
    assert gen["kind"] == "generate" and gen["seeds"]["base_seed"] == 5 and gen["config"]["steps"] == steps
    assert "git" in gen and "versions" in gen


def test_same_seed_same_frames_whatever_the_batch_size(loaded, tmp_path):
    bundle, student = loaded
    items = tiny_suite(["color"])[:3]

    def frames(name: str, seed: int, batch_size: int, exact: bool, sampler: str = "student", steps: int = 2):
        out = tmp_path / name
        unet = student if sampler == "student" else bundle.unet
        G.generate_videos(bundle, unet, items, out, sampler=sampler, steps=steps, videos_per_prompt=1, seed=seed,
                          batch_size=batch_size, batch_invariant=exact)
        return {f: read_video(out / f)[0] for f in G.read_manifest(out)}

    # --batch-invariant: bit-identical decoded frames for batch sizes 1 and 3 (student and teacher).
    for sampler, steps in (("student", 2), ("teacher", 3)):
        one, three = frames(f"{sampler}-b1", 11, 1, True, sampler, steps), frames(f"{sampler}-b3", 11, 3, True, sampler, steps)
        assert set(one) == set(three) and len(one) == 3
        for f in one:
            np.testing.assert_array_equal(one[f], three[f])
    # The default (batched denoiser): the same batch size reproduces bit for bit; another batch
    # size gives the same noise but shape-dependent float kernels (~1e-6) may flip a few roundings.
    batched3, again3 = frames("d-b3", 11, 3, False), frames("d-b3-again", 11, 3, False)
    for f in batched3:
        np.testing.assert_array_equal(batched3[f], again3[f])
    exact = frames("student-b1", 11, 1, True)
    diff = np.concatenate([(batched3[f].astype(int) - exact[f].astype(int)).ravel() for f in exact])
    assert np.abs(diff).max() <= 4 and np.count_nonzero(diff) <= diff.size // 1000
    other = frames("seed12", 12, 3, True)
    assert any(not np.array_equal(exact[f], other[f]) for f in exact)  # the seed matters


def test_cli_student_run_writes_run_layout_with_recorded_random_seed_and_suite_info(run_dir):
    res = cli(["--run", str(run_dir), "--suite", "tiny", "--dimension", "color", "--videos-per-prompt", "1", "--batch-size", "3"])
    assert res.exit_code == 0, res.output
    out = run_dir / "videos" / "tiny_4step"
    items = tiny_suite(["color"])
    records = G.read_manifest(out)
    assert set(records) == planned(items, 1)
    gen = json.loads((out / G.GENERATION_NAME).read_text())
    base = gen["seeds"]["base_seed"]
    assert isinstance(base, int) and all(r["base_seed"] == base for r in records.values())
    assert all(r["timesteps"] == [999, 759, 519, 279] and r["nfe"] == 4 for r in records.values())
    assert gen["config"]["sampler"] == "student" and gen["suite"] == "tiny"
    info = json.loads((out / G.SUITE_INFO_NAME).read_text())
    assert info["source"]["suite"] == "tiny"
    assert info["prompts"]["a red square"] == {
        "dimensions": ["color"], "auxiliary_info": {"objects": [{"shape": "square", "color": "red"}]}, "videos": 1,
    }
    # A rerun finds everything done: nothing regenerated, the same base seed kept.
    before = {f: (out / f).stat().st_mtime_ns for f in records}
    res = cli(["--run", str(run_dir), "--suite", "tiny", "--dimension", "color", "--videos-per-prompt", "1"])
    assert res.exit_code == 0, res.output
    assert before == {f: (out / f).stat().st_mtime_ns for f in records}
    assert json.loads((out / G.GENERATION_NAME).read_text())["seeds"]["base_seed"] == base
    # Other settings into the same folder: refused, nothing mixed.
    res = cli(["--run", str(run_dir), "--suite", "tiny", "--dimension", "color", "--out", str(out), "--steps", "2"])
    assert res.exit_code == 2 and "other settings" in said(res)


@pytest.mark.integration
def test_killed_run_resumes_to_a_complete_folder_without_corrupt_or_duplicate_files(run_dir, tmp_path):
    out = tmp_path / "videos"
    dims = ["color", "scene"]
    args = ["--run", str(run_dir), "--suite", "tiny", "--videos-per-prompt", "2", "--batch-size", "1",
            "--out", str(out), "--threads", "1"] + [x for d in dims for x in ("--dimension", d)]
    plan = planned(tiny_suite(dims), 2)
    proc = subprocess.Popen([sys.executable, "-m", "bench", "generate", *args], cwd=REPO, env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if out.is_dir() and len([p for p in out.iterdir() if p.name.endswith(".mp4") and not p.name.endswith(TMP_SUFFIX)]) >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"finished or failed before the kill: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    done_before = G.read_manifest(out)
    assert 0 < len(done_before) < len(plan)
    # What a kill (or a crash between rename and record) can leave: a temp file, and a final
    # file with no record. Both must be dealt with.
    todo = sorted(plan - set(done_before))
    (out / (todo[0][: -len(".mp4")] + TMP_SUFFIX)).write_bytes(b"\x00" * 100)
    (out / todo[1]).write_bytes(b"not a video")

    res = cli(args)
    assert res.exit_code == 0, res.output
    mp4s = {p.name for p in out.iterdir() if p.name.endswith(".mp4")}
    assert mp4s == plan  # no temp file left, nothing missing, nothing extra
    raw = G.read_manifest_records(out)
    assert sorted(r["file"] for r in raw) == sorted(plan)  # one record per video
    assert len({r["base_seed"] for r in raw}) == 1  # the resume reused the recorded base seed
    for f in plan:
        assert_decodable(out / f)
    for f, rec in done_before.items():  # finished videos were kept, not redone
        assert G.read_manifest(out)[f] == rec


@pytest.mark.integration
def test_two_processes_with_accelerate_split_the_plan_without_gaps_or_duplicates(run_dir, tmp_path):
    out = tmp_path / "sharded"
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "bench", "generate", "--run", str(run_dir), "--suite", "tiny", "--dimension", "color",
           "--videos-per-prompt", "2", "--batch-size", "2", "--out", str(out), "--threads", "1"]
    res = subprocess.run(cmd, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    plan = G.plan_videos(G.as_suite_items(tiny_suite(["color"])), 2)
    assert {p.name for p in out.glob("*.mp4")} == {v.file for v in plan}
    raw = G.read_manifest_records(out)
    assert sorted(r["file"] for r in raw) == sorted(v.file for v in plan)  # no gaps, no duplicates
    position = {v.file: v.position for v in plan}
    for k in range(2):
        shard = [json.loads(line) for line in (out / f"manifest.shard-{k}-of-2.jsonl").read_text().splitlines()]
        assert shard and all(position[r["file"]] % 2 == k and r["shard"] == [k, 2] for r in shard)
    assert len({r["base_seed"] for r in raw}) == 1  # one base seed, broadcast by the main process
    assert "all shards: 12/12 videos complete" in res.stderr
