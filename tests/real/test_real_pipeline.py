"""The real path end to end, as a user runs it, on the miniature real-layout world
(tests/real/miniworld.py: random-weight checkpoints in the official layouts at tiny widths,
WebVid-style data with a corrupt and a too-short file at 24 fps):

  bench train --config ms|vc2 (every variant; weights by config keys, once by environment
  variables; a kill and --resume) -> bench generate --run ... --suite vbench --limit N ->
  bench score vbench -d temporal_flickering (the real vbench package) -> bench report ->
  bench ablate --config <yaml>.

Everything runs on the CPU in a few minutes; the VBench environment is the one
tests/bench/vbench/test_adapter.py uses (created on first use, then shared).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from bench.cli import _register_verbs, app
from tests.real.miniworld import (
    WEBVID_CLIPS,
    WEIGHT_ENV_VARS,
    ablation_spec,
    architectures,
    build_miniworld,
    env_vars,
    train_config,
    write_webvid,
)

REPO = Path(__file__).resolve().parents[2]
TEACHERS = ("ms", "vc2")
# The teachers' own video rewards in the shipped configs: ms -> ViCLIP, vc2 -> InternVideo2.
DEFAULT_RM_VID = {"ms": "viclip", "vc2": "internvid2"}
# Frame size of the miniature teachers: ms unet sample_size 4 x VAE factor 2; vc2 latent 4 x 6 x 2.
FRAME_HW = {"ms": (8, 8), "vc2": (8, 12)}
LIMIT = 2  # prompts of VBench's temporal_flickering list that the smoke runs generate


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell with none of the weight variables set."""
    env = {k: v for k, v in os.environ.items() if k not in WEIGHT_ENV_VARS}
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", COLUMNS="200", **extra)
    return env


def _invoke(args: list[str], env: dict[str, str] | None = None, exit_code: int = 0):
    """`bench ARGS` in this process (typer's runner: no interpreter start-up per run), with
    none of the weight variables set but those in `env`."""
    _register_verbs()
    with pytest.MonkeyPatch.context() as mp:
        for var in WEIGHT_ENV_VARS:
            mp.delenv(var, raising=False)
        for var, value in (env or {}).items():
            mp.setenv(var, value)
        result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == exit_code, f"bench {' '.join(args)}\n{result.output}\n{result.exception!r}"
    return result


def _log_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "train_log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _check_finished_run(run_dir: Path, world, steps: int, variant: str) -> dict:
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "finished" and run["steps"] == steps and run["config"]["variant"] == variant
    assert (run_dir / "student" / "adapter.safetensors").is_file()
    rows = _log_rows(run_dir)
    # (A run killed between a row and its checkpoint logs that step again when resumed.)
    assert sorted({int(r["step"]) for r in rows}) == list(range(1, steps + 1)) and int(rows[-1]["step"]) == steps
    # With seed 0 the first two steps' draws hit both bad files; training went on regardless.
    skipped = run["skipped_videos"]
    assert set(skipped["files"]) == set(world.bad_files)
    for path, kind in world.bad_files.items():
        assert ("too short" in skipped["files"][path]) == (kind == "short")
    assert skipped["count"] == int(rows[-1]["skipped"]) >= 2
    assert [int(r["skipped"]) for r in rows] == sorted(int(r["skipped"]) for r in rows)  # running total
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    _check_terms(rows, variant, run["config"]["reward_weighting"])
    return run


def _check_terms(rows: list[dict], variant: str, weighting: str) -> None:
    """Which loss terms each logged step computed (NaN in the log: not computed).

    paper: every step has the CD loss and every reward the variant uses. released (the 6/2
    process split, emulated per step): a step is either CD + image reward, or the video reward
    alone (only for a variant with a video reward).
    """
    uses_img, uses_vid = "img" in variant.split("+"), "vid" in variant.split("+")
    for r in rows:
        cd, img, vid = (float(r[k]) for k in ("loss_cd", "reward_img", "reward_vid"))
        video_step = weighting == "released" and not math.isfinite(cd)
        if video_step:
            assert uses_vid and img != img and abs(vid) <= 1, r
        else:
            assert math.isfinite(cd), r
            assert (abs(img) <= 1) if uses_img else (img != img), r
            assert (vid != vid) if (weighting == "released" or not uses_vid) else (abs(vid) <= 1), r


# --------------------------------------------------------------------------------------------
# fixtures: the world, its configs, one T2V-Turbo run per teacher
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_miniworld(tmp_path_factory.mktemp("miniworld"))


@pytest.fixture(scope="module")
def configs(world) -> dict[str, Path]:
    return {t: train_config(world, t, world.root / f"{t}.yaml") for t in TEACHERS}


@pytest.fixture(scope="module")
def t2v_turbo_runs(world, configs, tmp_path_factory) -> dict[str, Path]:
    """`bench train --config <teacher yaml>`: the config's own variant, T2V-Turbo (vcm+img+vid)."""
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for teacher in TEACHERS:
        runs[teacher] = root / f"{teacher}-t2v-turbo"
        _invoke(["train", "--config", str(configs[teacher]), "--run-dir", str(runs[teacher]), "--device", "cpu"])
    return runs


# --------------------------------------------------------------------------------------------
# the batches of real video files
# --------------------------------------------------------------------------------------------


def test_video_file_batches_skip_corrupt_and_short_files_and_count_them(tmp_path):
    """The first batch of every real run used to end in KeyError('video'); a bad file in
    VideoDecodeError. Now: [B, C, F, h, w] latents, bad files skipped, counted and named."""
    from bench.config import load_config
    from bench.train import VideoFileBatches
    from t2v_turbo_core.models import VideoVAE
    from tests.core.conftest import make_tiny_vae

    annotations, video_root = write_webvid(tmp_path)
    teacher = SimpleNamespace(num_frames=16, height=8, width=8, fps=8, vae=VideoVAE(make_tiny_vae(), scaling_factor=0.18215))

    def webvid_csv(name: str, kinds: set[str]) -> Path:
        path = tmp_path / name
        path.write_text("videoid,page_dir,name\n" + "".join(
            f"{c.videoid},{c.page_dir},{c.name}\n" for c in WEBVID_CLIPS if c.kind in kinds))
        return path

    # Good files only: the batch is the decoded clips' latents (this was the KeyError).
    cfg = load_config("ms", [f"data.annotations={webvid_csv('good.csv', {'good'})}", f"data.video_root={video_root}"])
    latents, caps = VideoFileBatches(teacher, cfg, seed=0, rank=0, world=1)(0, 2, "cpu")
    assert latents.shape == (2, 4, 16, 4, 4) and len(caps) == 2

    # The whole WebVid file: a corrupt and a too-short clip among them.
    cfg = load_config("ms", [f"data.annotations={annotations}", f"data.video_root={video_root}"])
    batches = VideoFileBatches(teacher, cfg, seed=0, rank=0, world=1)
    captions = []
    for step in range(4):
        latents, caps = batches(step, 2, "cpu")
        assert latents.shape == (2, 4, 16, 4, 4) and torch.isfinite(latents).all()
        captions += caps
    good = {c.name for c in WEBVID_CLIPS if c.kind == "good"}
    assert set(captions) <= good and len(set(captions)) > 1
    bad = {str(c.path(video_root)): c.kind for c in WEBVID_CLIPS if c.kind != "good"}
    assert set(batches.skipped) == set(bad) and batches.num_skipped >= 2
    assert "too short: 20 frames, the clip needs 46 (16 frames at stride 3)" in batches.skipped[
        next(p for p, k in bad.items() if k == "short")]

    # `data.fps=16` from the command line is the string "16": the 24 fps files are strided by 2.
    cfg = load_config("ms", [f"data.annotations={annotations}", f"data.video_root={video_root}", "data.fps=16"])
    strided = VideoFileBatches(teacher, cfg, seed=0, rank=0, world=1)
    assert strided.dataset.target_fps == 16.0
    strided(0, 2, "cpu")
    assert "(16 frames at stride 2)" in strided.skipped[next(p for p, k in bad.items() if k == "short")]

    # A file list of nothing but bad files is a clear error, not an endless loop.
    from bench.train import TrainingError

    cfg = load_config("ms", [f"data.annotations={webvid_csv('bad.csv', {'corrupt', 'short'})}", f"data.video_root={video_root}"])
    with pytest.raises(TrainingError, match="none of the 2 videos"):
        VideoFileBatches(teacher, cfg, seed=0, rank=0, world=1)(0, 1, "cpu")


def test_a_checkpoint_left_half_written_by_a_kill_is_not_resumed_from(tmp_path):
    from bench.train import _checkpoint_dirs

    for name in ("step-000002", "step-000003.tmp"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
        (tmp_path / "checkpoints" / name / "state.json").write_text("{}")
    assert [p.name for p in _checkpoint_dirs(tmp_path)] == ["step-000002"]


def test_modelscope_frame_size_follows_the_unet_sample_size(world):
    from t2v_turbo_core.teachers import load_modelscope

    bundle = load_modelscope(world.modelscope)
    assert (bundle.height, bundle.width, bundle.num_frames, bundle.fps) == (*FRAME_HW["ms"], 16, 8)


# --------------------------------------------------------------------------------------------
# bench train
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("teacher", TEACHERS)
@pytest.mark.parametrize("variant", ["vcm", "vcm+img", "vcm+vid"])
def test_train_every_variant_with_weights_and_data_from_config_keys(world, configs, tmp_path, teacher, variant):
    run_dir = tmp_path / "run"
    # The paper's per-sample sum here (every step computes every term the variant uses); the
    # shipped configs' released split is what the T2V-Turbo runs below take.
    _invoke(["train", "--config", str(configs[teacher]), "--variant", variant, "--run-dir", str(run_dir), "--device", "cpu",
             "reward_weighting=paper"])
    run = _check_finished_run(run_dir, world, steps=2, variant=variant)
    assert run["config"]["reward_weighting"] == "paper"
    assert run["config"]["weights"]["architectures"] == str(world.architectures)


def test_train_t2v_turbo_for_both_teachers(world, t2v_turbo_runs):
    """The shipped configs' own variant, with each teacher's video reward (ms ViCLIP, vc2 InternVideo2)."""
    for teacher, run_dir in t2v_turbo_runs.items():
        run = _check_finished_run(run_dir, world, steps=2, variant="vcm+img+vid")
        assert run["config"]["rm_vid"] == DEFAULT_RM_VID[teacher] and run["config"]["teacher"] == teacher
        assert run["config"]["reward_weighting"] == "released"  # the shipped configs follow the released code
        adapter = load_file(str(run_dir / "student" / "adapter.safetensors"))
        assert any("lora_" in k for k in adapter) and any("cond_proj" in k for k in adapter)


def test_train_pickscore_image_reward(world, configs, tmp_path):
    _invoke(["train", "--config", str(configs["ms"]), "--variant", "vcm+img", "rm_img=pickscore",
             "--run-dir", str(tmp_path / "run"), "--device", "cpu"])
    run = _check_finished_run(tmp_path / "run", world, steps=2, variant="vcm+img")
    assert run["config"]["rm_img"] == "pickscore"


def test_train_with_weights_from_the_documented_environment_variables(world, tmp_path):
    """Only the architectures file and the data in the config; every weight path from its variable."""
    config = train_config(world, "vc2", tmp_path / "vc2-env.yaml", by_config_keys=False)
    assert set(yaml.safe_load(config.read_text())["weights"]) == {"architectures"}
    run_dir = tmp_path / "run"
    args = ["train", "--config", str(config), "--variant", "vcm+img+vid", "--rm-vid", "viclip", "--run-dir", str(run_dir), "--device", "cpu"]
    no_cache = {"HF_HUB_CACHE": str(tmp_path / "no-hub"), "HOME": str(tmp_path / "home")}
    result = _invoke(args, env=no_cache, exit_code=2)
    assert "T2V_VC2_CKPT" in result.output and not run_dir.exists()
    _invoke(args, env={**no_cache, **env_vars(world, "vc2")})
    _check_finished_run(run_dir, world, steps=2, variant="vcm+img+vid")


def test_a_wrong_caption_file_exits_2_and_leaves_no_run_directory(configs, tmp_path):
    (tmp_path / "no-caption.csv").write_text("videoid,page_dir\n1,2\n")
    for annotations, expected in ((tmp_path / "nowhere.csv", "annotation file not found"), (tmp_path / "no-caption.csv", "needs a video")):
        run_dir = tmp_path / "run"
        result = _invoke(["train", "--config", str(configs["ms"]), "--run-dir", str(run_dir), "--device", "cpu",
                          f"data.annotations={annotations}"], exit_code=2)
        assert expected in result.output and annotations.name in result.output
        assert not run_dir.exists()


@pytest.mark.integration
def test_a_killed_run_resumes_and_ends_where_an_uninterrupted_one_does(world, configs, tmp_path):
    overrides = ["steps=5", "checkpoint_every=1", "keep_checkpoints=5"]
    straight = tmp_path / "straight"
    _invoke(["train", "--config", str(configs["vc2"]), "--run-dir", str(straight), "--device", "cpu", *overrides])

    killed = tmp_path / "killed"
    args = ["train", "--config", str(configs["vc2"]), "--run-dir", str(killed), "--device", "cpu", *overrides]
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=tmp_path, env=_clean_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "step-000002" / "state.json").is_file():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    assert json.loads((killed / "run.json").read_text())["status"] == "running"
    assert not (killed / "student").exists()

    _invoke(["train", "--run-dir", str(killed), "--resume", "--device", "cpu"])
    run = _check_finished_run(killed, world, steps=5, variant="vcm+img+vid")
    assert run["skipped_videos"] == json.loads((straight / "run.json").read_text())["skipped_videos"]
    a = load_file(str(straight / "student" / "adapter.safetensors"))
    b = load_file(str(killed / "student" / "adapter.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)


# --------------------------------------------------------------------------------------------
# bench generate --limit, bench score vbench, bench report
# --------------------------------------------------------------------------------------------


def test_generate_limit_is_documented_and_checked(tmp_path):
    _register_verbs()
    help_text = CliRunner().invoke(app, ["generate", "--help"], env={"COLUMNS": "200"}).output
    assert "--limit" in help_text and "first N prompts" in help_text
    plan = _invoke(["generate", "--suite", "vbench", "--dimension", "temporal_flickering", "--limit", "3", "--dry-run"]).output
    from bench.vbench.suite import load_vbench_suite

    first = [e.prompt for e in load_vbench_suite(["temporal_flickering"])[:3]]
    assert plan.splitlines() == [f"{p}-{i}.mp4" for p in first for i in range(5)]
    result = _invoke(["generate", "--suite", "vbench", "--limit", "0", "--dry-run"], exit_code=2)
    assert "--limit must be >= 1" in result.output


@pytest.fixture(scope="module")
def generated(t2v_turbo_runs) -> dict[str, Path]:
    """`bench generate --run R --suite vbench --dimension temporal_flickering --limit 2`, one video per prompt."""
    out = {}
    for teacher, run_dir in t2v_turbo_runs.items():
        _invoke(["generate", "--run", str(run_dir), "--suite", "vbench", "--dimension", "temporal_flickering",
                 "--limit", str(LIMIT), "--videos-per-prompt", "1", "--seed", "7", "--device", "cpu"])
        out[teacher] = run_dir / "videos" / "vbench_4step"
    return out


def test_generate_a_limited_vbench_suite_from_each_student(generated):
    import av

    from bench.generate import read_manifest
    from bench.vbench.suite import load_vbench_suite

    prompts = [e.prompt for e in load_vbench_suite(["temporal_flickering"])[:LIMIT]]
    for teacher, videos in generated.items():
        assert sorted(p.name for p in videos.glob("*.mp4")) == sorted(f"{p}-0.mp4" for p in prompts)
        records = read_manifest(videos)
        assert len(records) == LIMIT and all(r["sampler"] == "student" and r["steps"] == 4 for r in records.values())
        generation = json.loads((videos / "generation.json").read_text())
        assert generation["limit"] == LIMIT and generation["dimensions"] == ["temporal_flickering"]
        with av.open(str(videos / f"{prompts[0]}-0.mp4")) as container:
            stream = container.streams.video[0]
            assert (stream.height, stream.width) == FRAME_HW[teacher]
            assert sum(1 for _ in container.decode(stream)) == 16


def test_score_vbench_temporal_flickering_and_report(generated, t2v_turbo_runs, tmp_path):
    """The real vbench package (its own env) on the generated videos, then `bench report`."""
    values = {}
    for teacher, run_dir in t2v_turbo_runs.items():
        _invoke(["score", "vbench", "--run", str(run_dir), "-d", "temporal_flickering", "--device", "cpu"],
                env={"VBENCH_CACHE_DIR": str(tmp_path / "vbench-cache")})
        scores = run_dir / "scores" / "vbench_4step-vbench"
        aggregate, per_video = json.loads((scores / "temporal_flickering_eval_results.json").read_text())["temporal_flickering"]
        assert len(per_video) == LIMIT and 0 < aggregate <= 1
        assert {Path(v["video_path"]).parent for v in per_video} == {generated[teacher].resolve()}
        values[teacher] = aggregate

    prefix = tmp_path / "reports" / "miniworld"
    _invoke(["report", *(str(t2v_turbo_runs[t]) for t in TEACHERS), "--out", str(prefix)])
    with open(prefix.with_suffix(".csv"), newline="") as fh:
        rows = {r["model"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {t2v_turbo_runs[t].name for t in TEACHERS}
    for teacher in TEACHERS:
        assert float(rows[t2v_turbo_runs[teacher].name]["temporal_flickering"]) == pytest.approx(100 * values[teacher])
    assert prefix.with_suffix(".md").is_file() and prefix.with_name("miniworld_dimensions.png").is_file()


# --------------------------------------------------------------------------------------------
# bench ablate
# --------------------------------------------------------------------------------------------


def test_ablate_over_the_miniature_world_with_vbench(world, configs, tmp_path):
    spec = ablation_spec(configs["vc2"], tmp_path / "ablation", tmp_path / "reports" / "miniworld-ablation", limit=LIMIT)
    config = tmp_path / "ablate.yaml"
    config.write_text(yaml.safe_dump(spec))
    _invoke(["ablate", "--config", str(config)], env={"VBENCH_CACHE_DIR": str(tmp_path / "vbench-cache")})

    with open(tmp_path / "reports" / "miniworld-ablation.csv", newline="") as fh:
        rows = {r["model"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"vcm", "vcm+img+vid-internvid2", "teacher"}
    for name, row in rows.items():
        assert 0 < float(row["temporal_flickering"]) <= 100, (name, row)
        scored = json.loads((tmp_path / "ablation" / name / "scores" / "vbench_2step-vbench" / ".bench" / "scoring.json").read_text()
                            if name != "teacher" else
                            (tmp_path / "ablation" / name / "scores" / "vbench_teacher2-vbench" / ".bench" / "scoring.json").read_text())
        assert scored["requested"] == ["temporal_flickering"] and scored["status"] == "complete"
        assert scored["dimensions"]["temporal_flickering"]["status"] == "complete"
    for name in ("vcm", "vcm+img+vid-internvid2"):
        _check_finished_run(tmp_path / "ablation" / name, world, steps=2, variant=name.split("-")[0])
    assert "miniworld-ablation" in (tmp_path / "reports" / "miniworld-ablation.md").read_text()


def test_ablation_jobs_of_a_real_teacher_generate_on_the_gpu_when_there_is_one(configs, tmp_path, monkeypatch):
    """Training used accelerate's device, generation always the CPU: a real teacher's baseline
    would have run on the CPU of a GPU machine."""
    import bench.runs
    from bench.ablate import AblationSpec, run_job

    class Loaded(Exception):
        pass

    def load_teacher(cfg, device="cpu"):
        raise Loaded(device)

    monkeypatch.setattr(bench.runs, "load_teacher", load_teacher)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for config, expected in ((str(configs["vc2"]), "cuda"), ("tiny", "cpu")):
        spec = AblationSpec(train_config=config, work_dir=str(tmp_path / config.replace("/", "_")))
        with pytest.raises(Loaded) as err:
            run_job(dataclasses.asdict(spec), {"name": "teacher", "variant": "teacher"})
        assert err.value.args == (expected,)


def test_a_checkpoint_that_does_not_fit_exits_2_naming_the_file_and_the_architectures_key(world, configs, tmp_path):
    """Tiny checkpoints read at the official sizes (no weights.architectures), or a bad
    architectures file: one clear error, no traceback, no run directory."""
    bad_arch = tmp_path / "bad-arch.yaml"
    bad_arch.write_text(yaml.safe_dump({**architectures(), "viclip": {"vision_width": 32, "no_such_field": 1}}))
    cases = (
        (["weights.architectures="], ["the VideoCrafter2 teacher from", str(world.videocrafter2), "does not fit", "weights.architectures=FILE.yaml"]),
        ([f"weights.architectures={bad_arch}", "rm_vid=viclip"], ["weights.architectures [viclip]: unknown key(s) no_such_field"]),
        ([f"weights.architectures={tmp_path / 'none.yaml'}"], ["weights.architectures: no such file", "none.yaml"]),
    )
    for overrides, expected in cases:
        run_dir = tmp_path / "run"
        result = _invoke(["train", "--config", str(configs["vc2"]), "--run-dir", str(run_dir), "--device", "cpu", *overrides], exit_code=2)
        assert "Traceback" not in result.output and not run_dir.exists()
        for text in expected:
            assert text in result.output.replace("\n", " ") or text in result.output, (text, result.output[-2000:])
