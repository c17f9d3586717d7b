"""Kill and resume, per verb: whatever the moment of the kill, the rerun ends where an
uninterrupted run ends (videos bit for bit, results value for value, train_log.csv row
for row).

A kill is simulated in-process where the moment matters (an exception raised at a chosen
write: after a video's rename and before its record, halfway through a record, between two
result files, after a log row and before its checkpoint), and with a real SIGKILL of a
`bench` process where the moment is left to chance. Random-weight models, tiny sizes.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from bench import generate as G
from bench.tinyworld import score as st
from bench.cli import _register_verbs, app
from bench.config import load_config
from bench.tinyworld.suite import tiny_suite
from bench.train import train
from bench.video_io import TMP_SUFFIX, write_mp4

REPO = Path(__file__).resolve().parents[2]
_register_verbs()


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler on the way treats it as an error."""


def child_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


# =========================================================================== train

TRAIN = ["batch_size=1", "lora_rank=4", "lora_alpha=4", "log_every=1", "checkpoint_every=2", "variant=vcm"]
LOSS_COLUMNS = ("lr", "loss", "loss_cd", "loss_reward", "grad_norm")


def _cfg(zoo, steps: int):
    return load_config("tiny", [f"weights.tiny_zoo={zoo}", f"steps={steps}", *TRAIN])


def log_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "train_log.csv", newline="") as f:
        return list(csv.DictReader(f))


def assert_same_log(a: Path, b: Path) -> None:
    """Same steps, once each, in order, with the same losses (seconds differ by nature)."""
    ra, rb = log_rows(a), log_rows(b)
    assert [r["step"] for r in rb] == [r["step"] for r in ra]
    for x, y in zip(ra, rb):
        for k in LOSS_COLUMNS:
            assert float(x[k]) == pytest.approx(float(y[k]), rel=1e-4, abs=1e-7), (x["step"], k)


def assert_same_adapter(a: Path, b: Path) -> None:
    sa, sb = load_file(str(a / "student" / "adapter.safetensors")), load_file(str(b / "student" / "adapter.safetensors"))
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def straight_run(random_zoo, tmp_path_factory):
    run = tmp_path_factory.mktemp("straight") / "run"
    train(_cfg(random_zoo, 5), run, device="cpu")
    return run


def test_train_killed_between_checkpoints_resumes_to_the_same_log_and_adapter(random_zoo, straight_run, tmp_path):
    cfg = _cfg(random_zoo, 5)
    run = tmp_path / "run"

    def kill_at(n):
        def on_step(step, logs):
            if step == n:
                raise Killed  # after the step's log row, before its checkpoint (every 2 steps)
        return on_step

    # Killed at step 3 (row 3 logged, last checkpoint step 2), resumed; killed again at 5 (the
    # last step: row 5 logged, its checkpoint not written), resumed to the end.
    with pytest.raises(Killed):
        train(cfg, run, device="cpu", on_step=kill_at(3))
    assert [r["step"] for r in log_rows(run)] == ["1", "2", "3"]
    with pytest.raises(Killed):
        train(cfg, run, resume=True, device="cpu", on_step=kill_at(5))
    with open(run / "train_log.csv", "a") as f:
        f.write("6,0.5,0.00")  # and a row torn by the kill (no newline)
    train(cfg, run, resume=True, device="cpu")
    assert_same_log(straight_run, run)  # no step twice, none missing, no torn row
    assert_same_adapter(straight_run, run)
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


@pytest.mark.integration
def test_train_sigkill_then_resume_matches_an_uninterrupted_run(random_zoo, straight_run, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "bench", "train", "--device", "cpu", "--run-dir", str(run),
           f"weights.tiny_zoo={random_zoo}", "steps=5", *TRAIN]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        log = run / "train_log.csv"
        # Kill once step 3 is logged: the last checkpoint is step 2, so rows 3.. come again.
        while time.time() < deadline and proc.poll() is None:
            if log.is_file() and len(log.read_text().splitlines()) >= 4:
                break
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    steps_logged = [int(r["step"]) for r in log_rows(run)]
    assert 3 <= max(steps_logged) < 5
    result = CliRunner().invoke(app, ["train", "--device", "cpu", "--run-dir", str(run), "--resume"])
    assert result.exit_code == 0, result.output
    assert_same_log(straight_run, run)
    assert_same_adapter(straight_run, run)


# =========================================================================== generate

PROMPTS = ["a red circle", "a blue square", "a green triangle"]
TIMING = ("seconds", "sampling_seconds", "batch_size", "model_label")  # timings; the label is a path


@pytest.fixture(scope="module")
def student(random_zoo, tmp_path_factory):
    from bench.runs import load_run_student
    from tests.helpers.tinyworld import make_random_run

    run = make_random_run(tmp_path_factory.mktemp("kill_run") / "run", random_zoo)
    bundle, unet, _ = load_run_student(run)
    return bundle, unet


def _generate(student, out: Path, **kw):
    bundle, unet = student
    return G.generate_videos(bundle, unet, PROMPTS, out, videos_per_prompt=2, seed=11, batch_size=2,
                             batch_invariant=True, **kw)


def _records(out: Path) -> dict[str, dict]:
    return {f: {k: v for k, v in r.items() if k not in TIMING} for f, r in G.read_manifest(out).items()}


@pytest.fixture(scope="module")
def straight_videos(student, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen_straight") / "videos"
    _generate(student, out)
    return out


def assert_same_videos(ref: Path, out: Path) -> None:
    files = sorted(p.name for p in ref.glob("*.mp4"))
    assert sorted(p.name for p in out.glob("*.mp4")) == files  # no temp file, nothing missing
    for name in files:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    assert _records(out) == _records(ref)
    for line in (out / G.MANIFEST_NAME).read_text().splitlines():
        json.loads(line)  # every line is a record: torn lines repaired, not kept
    assert len((out / G.MANIFEST_NAME).read_text().splitlines()) == len(files)


@pytest.mark.parametrize("point", ["after a video's rename, before its record", "halfway through a record",
                                   "while a video is written"])
def test_generate_killed_at_a_write_resumes_to_the_same_videos(point, student, straight_videos, tmp_path, monkeypatch):
    out = tmp_path / "videos"
    calls = {"n": 0}
    real_append, real_write = G._append_record, write_mp4

    def append(path, record):
        calls["n"] += 1
        if calls["n"] == 3:
            if point == "halfway through a record":
                line = json.dumps(record)
                with open(path, "a") as f:
                    f.write(line[: len(line) // 2])
            raise Killed
        real_append(path, record)

    def write(path, frames, fps, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            tmp = Path(path).with_name(Path(path).name[: -len(".mp4")] + TMP_SUFFIX)
            tmp.write_bytes(b"\x00" * 64)  # a half-written temp file under its temporary name
            raise Killed
        return real_write(path, frames, fps, **kw)

    if point == "while a video is written":
        monkeypatch.setattr("bench.video_io.write_mp4", write)
    else:
        monkeypatch.setattr("bench.generate.videos._append_record", append)  # where generate_videos looks it up
    with pytest.raises(Killed):
        _generate(student, out)
    monkeypatch.undo()
    summary = _generate(student, out)
    assert summary.skipped == 2 and summary.generated == 4
    assert_same_videos(straight_videos, out)


def test_generate_rerun_remakes_recorded_videos_that_were_damaged(student, straight_videos, tmp_path):
    import shutil

    out = tmp_path / "videos"
    shutil.copytree(straight_videos, out)
    files = sorted(out.glob("*.mp4"))
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 2])  # cut to half
    files[1].write_bytes(b"")  # emptied
    files[2].write_bytes(data[:-10])  # a few bytes short: the header may still open
    summary = _generate(student, out)
    assert summary.damaged == 3 and summary.generated == 3 and summary.skipped == 3
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(p.name for p in straight_videos.glob("*.mp4"))
    for name in (p.name for p in straight_videos.glob("*.mp4")):
        assert (out / name).read_bytes() == (straight_videos / name).read_bytes(), name
    assert _records(out) == _records(straight_videos)  # latest record per file: the remade one


@pytest.mark.integration
def test_generate_sigkill_then_resume_matches_an_uninterrupted_run(student, straight_videos, random_zoo, tmp_path):
    from tests.helpers.tinyworld import make_random_run

    # The same student as the fixture's (same seed, same zoo), in a run directory for the CLI.
    run = make_random_run(tmp_path / "run", random_zoo)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "videos"
    args = ["generate", "--run", str(run), "--prompt-file", str(prompts), "--videos-per-prompt", "2", "--seed", "11",
            "--batch-size", "1", "--batch-invariant", "--out", str(out), "--device", "cpu", "--threads", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=tmp_path, env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if len(G.read_manifest(out)) >= 2:
                break
            time.sleep(0.005)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert 2 <= len(G.read_manifest(out)) < 6
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert_same_videos(straight_videos, out)


# =========================================================================== score tiny

SCORE_DIMS = ["temporal_flickering", "color", "overall_consistency"]


@pytest.fixture(scope="module")
def score_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("score_videos") / "videos"
    rng = np.random.default_rng(3)
    for e in tiny_suite(SCORE_DIMS):
        write_mp4(folder / f"{e.prompt}-0.mp4", rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), fps=8)
    return folder


def _results(out: Path) -> dict[str, object]:
    got = {p.name: json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.name != st.SCORING_NAME}
    return got


@pytest.fixture(scope="module")
def straight_scores(score_videos, random_zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("score_straight") / "scores"
    st.score_tiny(score_videos, out, SCORE_DIMS, zoo=random_zoo)
    return out


@pytest.mark.parametrize("kill_at", [1, 3, 6])
def test_score_tiny_killed_between_result_files_resumes_to_the_same_results(kill_at, score_videos, straight_scores,
                                                                            random_zoo, tmp_path, monkeypatch):
    out = tmp_path / "scores"
    real = st._atomic_write_json
    calls = {"n": 0}

    def write(path, data):
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise Killed
        real(path, data)

    monkeypatch.setattr(st.outputs, "_atomic_write_json", write)  # where score_tiny looks it up
    with pytest.raises(Killed):
        st.score_tiny(score_videos, out, SCORE_DIMS, zoo=random_zoo)
    monkeypatch.undo()
    assert not list(out.glob(".*tmp*"))
    result = CliRunner().invoke(app, ["score", "tiny", "--videos-dir", str(score_videos), "--out", str(out),
                                      "--zoo", str(random_zoo), *[x for d in SCORE_DIMS for x in ("-d", d)]])
    assert result.exit_code == 0, result.output
    assert _results(out) == _results(straight_scores)
    assert json.loads((out / st.SCORING_NAME).read_text())["status"] == "complete"


def test_score_tiny_interrupted_mid_evaluation_resumes(score_videos, straight_scores, random_zoo, tmp_path, monkeypatch):
    out = tmp_path / "scores"

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(st.evaluation, "_frame_pass", interrupted)  # where _evaluate looks it up
    result = CliRunner().invoke(app, ["score", "tiny", "--videos-dir", str(score_videos), "--out", str(out),
                                      "--zoo", str(random_zoo), *[x for d in SCORE_DIMS for x in ("-d", d)]])
    assert result.exit_code == 130 and "resume" in result.output
    monkeypatch.undo()
    st.score_tiny(score_videos, out, SCORE_DIMS, zoo=random_zoo)
    assert _results(out) == _results(straight_scores)


# =========================================================================== ablate


def _mini_spec(tmp_path: Path, zoo) -> Path:
    spec = {
        "name": "kill", "train_config": "tiny",
        "train_overrides": [f"weights.tiny_zoo={zoo}", "steps=2", "batch_size=1", "lora_rank=4", "lora_alpha=4",
                            "checkpoint_every=1", "log_every=1"],
        "variants": [{"variant": "vcm"}], "student_steps": 2, "teacher_steps": 2,
        "dimensions": ["temporal_flickering"], "videos_per_prompt": 1, "seed": 5, "generate_batch": 1,  # batches of one: bit-identical on resume
        "jobs": 1, "bootstrap": 50, "work_dir": str(tmp_path / "runs"), "report": str(tmp_path / "reports" / "kill"),
    }
    path = tmp_path / "ablate.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _report_numbers(tmp_path: Path) -> list[dict]:
    import pandas as pd

    table = pd.read_csv(tmp_path / "reports" / "kill.csv")
    keep = [c for c in table.columns if "second" not in c and "speed" not in c and "nfe" not in c.lower()]
    return table[keep].round(6).fillna("none").to_dict("records")  # NaN != NaN: compare as a word


@pytest.mark.integration
@pytest.mark.slow
def test_ablate_sigkilled_at_several_points_resumes_to_the_same_report(random_zoo, tmp_path):
    straight = tmp_path / "straight"
    straight.mkdir()
    res = subprocess.run([sys.executable, "-m", "bench", "ablate", "--config", str(_mini_spec(straight, random_zoo))],
                         cwd=straight, env=child_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]

    killed = tmp_path / "killed"
    killed.mkdir()
    config = _mini_spec(killed, random_zoo)
    runs = killed / "runs"
    # Kill once the student's training has logged a row, then once a videos folder has a record.
    points = [lambda: any(runs.glob("*/train_log.csv")),
              lambda: any(G.read_manifest(p) for p in runs.glob("*/videos/*"))]
    for ready in points:
        proc = subprocess.Popen([sys.executable, "-m", "bench", "ablate", "--config", str(config)], cwd=killed,
                                env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.time() + 600
            while time.time() < deadline and proc.poll() is None and not ready():
                time.sleep(0.02)
            os.killpg(proc.pid, signal.SIGKILL)  # the ablation and its worker processes
        finally:
            proc.wait()
    res = subprocess.run([sys.executable, "-m", "bench", "ablate", "--config", str(config)], cwd=killed,
                         env=child_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _report_numbers(killed) == _report_numbers(straight)
    a, b = straight / "runs" / "vcm", killed / "runs" / "vcm"
    assert_same_log(a, b)
    assert_same_adapter(a, b)


# --------------------------------------------------------------------------- score vbench


def _vbench_videos(root: Path) -> Path:
    """Two temporal_flickering prompts, two videos each: one static, one flickering."""
    from bench.vbench import suite

    videos = root / "videos"
    videos.mkdir(parents=True)
    prompts = [e.prompt for e in suite.load_vbench_suite(["temporal_flickering"])[:2]]
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for k, prompt in enumerate(prompts):
        for i in range(2):
            frames = [base if (k == 0 or j % 2 == 0) else 255 - base for j in range(8)]
            write_mp4(videos / f"{prompt}-{i}.mp4", np.stack(frames), fps=8)
    return videos


def _vbench_results(out: Path) -> dict:
    raw = json.loads((out / "temporal_flickering_eval_results.json").read_text())["temporal_flickering"]
    return {"aggregate": raw[0], "videos": {Path(v["video_path"]).name: v["video_results"] for v in raw[1]}}


@pytest.mark.integration
def test_score_vbench_sigkill_at_several_points_then_rerun_matches_an_uninterrupted_run(tmp_path):
    """`bench score vbench -d temporal_flickering` (the real vbench in its env; no weights
    needed) killed with SIGKILL while VBench runs, and at once after start; the rerun
    publishes the same per-video values as an uninterrupted run and leaves no staging."""
    videos = _vbench_videos(tmp_path / "data")
    env = dict(child_env(), VBENCH_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="200")

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "bench", "score", "vbench", "--videos-dir", str(videos), "-d", "temporal_flickering",
                "--device", "cpu", "--out", str(out)]

    straight = tmp_path / "straight"
    done = subprocess.run(cmd(straight), cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    reference = _vbench_results(straight)

    # Kill points: right after start (before VBench), and once VBench's own log has begun.
    for name, ready in (("start", lambda out: True),
                        ("vbench", lambda out: (out / ".bench" / "logs" / "temporal_flickering.log").is_file())):
        out = tmp_path / f"killed-{name}"
        proc = subprocess.Popen(cmd(out), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None and not ready(out):
            time.sleep(0.05)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the harness and the VBench subprocess it started
        proc.wait(timeout=60)
        if name == "start":
            assert proc.returncode == -signal.SIGKILL  # killed before anything was scored
        assert not (out / "temporal_flickering_eval_results.json").is_file() or proc.returncode == 0
        rerun = subprocess.run(cmd(out), cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        got = _vbench_results(out)
        assert got["videos"] == reference["videos"] and got["aggregate"] == pytest.approx(reference["aggregate"])
        scoring = json.loads((out / ".bench" / "scoring.json").read_text())
        assert scoring["dimensions"]["temporal_flickering"]["status"] == "complete"
        assert not (out / ".bench" / "partial").exists()
