"""`bench score vbench`: weight pre-check, input resolution, resume, and a real VBench run.

The end-to-end test creates the VBench env on first use (a few minutes; reused through
its stamp file afterwards) and runs the official temporal_flickering on tiny videos.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from bench.scoring import cli as score_module
from bench.vbench import score as score_vbench
from bench.vbench import env as vbench_env
from bench.vbench import weights as vbench_weights
from bench.vbench import suite
from tests.helpers.cli import verb_app
from tests.helpers.vbench_caches import empty_weight_caches

REPO = Path(__file__).resolve().parents[3]


def _app() -> typer.Typer:
    return verb_app(score_module)


@pytest.fixture
def isolated_caches(tmp_path, monkeypatch):
    """Empty weight caches and a VBench env path that must never be created."""
    cache = empty_weight_caches(tmp_path, monkeypatch)
    env_dir = tmp_path / "no-env-here"
    monkeypatch.setenv(vbench_env.ENV_VAR, str(env_dir))

    def no_install(*_a, **_k):
        raise AssertionError("this test must not build a VBench env")

    monkeypatch.setattr(vbench_env, "ensure_env", no_install)
    return cache, env_dir


def _touch_videos(folder: Path, dimension: str, n_prompts: int = 2) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    prompts = [e.prompt for e in suite.load_vbench_suite([dimension])[:n_prompts]]
    for p in prompts:
        (folder / suite.standard_video_filenames(p, 1)[0]).write_bytes(b"")
    return prompts


def test_missing_weights_message_lists_every_file_and_exits_2_without_env(tmp_path, isolated_caches):
    cache, env_dir = isolated_caches
    videos = tmp_path / "videos"
    _touch_videos(videos, "subject_consistency")
    result = CliRunner().invoke(
        _app(),
        ["score", "vbench", "--videos-dir", str(videos),
         "-d", "subject_consistency", "-d", "aesthetic_quality", "-d", "temporal_flickering"],
    )
    assert result.exit_code == 2, result.output
    text = result.output
    expected = [
        cache / "dino_model" / "facebookresearch_dino_main" / "hubconf.py",
        cache / "dino_model" / "dino_vitbase16_pretrain.pth",
        tmp_path / "torch-home" / "hub" / "checkpoints" / "dino_vitbase16_pretrain.pth",
        cache / "clip_model" / "ViT-L-14.pt",
        cache / "aesthetic_model" / "emb_reader" / "sa_0_4_vit_l_14_linear.pth",
    ]
    for path in expected:
        assert str(path) in text, f"{path} not in:\n{text}"
    assert text.count("error:") == 1  # one message, not one per file
    assert "subject_consistency" in text and "aesthetic_quality" in text
    assert "temporal_flickering" not in text.split("\n", 1)[0]  # needs no weights
    assert not env_dir.exists()
    assert not (tmp_path / "videos-vbench").exists()  # nothing written before the check passes


def test_weight_table_covers_every_dimension_and_temporal_flickering_needs_none(isolated_caches):
    for d in suite.ALL_DIMENSIONS:
        reqs = vbench_weights.requirements_for(d)
        assert (len(reqs) == 0) == (d == "temporal_flickering"), d
    assert vbench_weights.missing_weights(["temporal_flickering"]) == {}


def test_present_weights_pass_the_check(isolated_caches):
    for r in vbench_weights.requirements_for("aesthetic_quality") + vbench_weights.requirements_for("imaging_quality"):
        r.path.parent.mkdir(parents=True, exist_ok=True)
        r.path.write_bytes(b"stand-in")
    # CLIP L/14 and MUSIQ have published hashes: stand-ins pass only without the hash check.
    assert set(vbench_weights.missing_weights(["aesthetic_quality", "imaging_quality"])) == {
        "aesthetic_quality", "imaging_quality"}
    assert vbench_weights.missing_weights(["aesthetic_quality", "imaging_quality"], verify_hashes=False) == {}
    assert "dynamic_degree" in vbench_weights.missing_weights(["dynamic_degree", "imaging_quality"], False)


def test_hf_snapshot_follows_refs_main(isolated_caches, tmp_path):
    repo = tmp_path / "hf-home" / "hub" / "models--bert-base-uncased"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "vocab.txt").write_text("[PAD]\n")
    missing = vbench_weights.missing_weights(["color"])["color"]
    assert [r.what for r in missing] == ["GRiT-B DenseCap+ObjectDet"]


def test_video_set_resolution(tmp_path):
    run = tmp_path / "run"
    (run / "videos" / "a_4step").mkdir(parents=True)
    vdir, label = score_vbench.resolve_videos(run, None, None)
    assert (vdir.name, label) == ("a_4step", "a_4step")
    assert score_vbench.default_out_dir(vdir, label) == (run / "scores" / "a_4step-vbench").resolve()
    (run / "videos" / "b_teacher50").mkdir()
    with pytest.raises(score_vbench.ScoreError, match="a_4step, b_teacher50"):
        score_vbench.resolve_videos(run, None, None)
    with pytest.raises(score_vbench.ScoreError, match="found: a_4step, b_teacher50"):
        score_vbench.resolve_videos(run, "c", None)
    assert score_vbench.resolve_videos(run, "b_teacher50", None)[1] == "b_teacher50"
    loose = tmp_path / "loose"
    loose.mkdir()
    assert score_vbench.default_out_dir(loose, "loose") == tmp_path / "loose-vbench"
    with pytest.raises(score_vbench.ScoreError, match="exactly one"):
        score_vbench.resolve_videos(run, None, loose)


def test_unknown_dimension_is_a_clear_error():
    with pytest.raises(score_vbench.ScoreError, match="temporal_flicker\n"):
        score_vbench.resolve_dimensions(["temporal_flicker"])
    assert score_vbench.resolve_dimensions(None) == list(suite.ALL_DIMENSIONS)


def test_no_videos_for_a_dimension_is_reported_before_any_install(tmp_path, isolated_caches):
    _, env_dir = isolated_caches
    videos = tmp_path / "videos"
    _touch_videos(videos, "temporal_flickering")
    result = CliRunner().invoke(_app(), ["score", "vbench", "--videos-dir", str(videos), "-d", "color"])
    # color lacks weights: that message comes first and alone.
    assert result.exit_code == 2 and "grit_b_densecap_objectdet.pth" in result.output
    assert "OpenGVLab/VBench_Used_Models" in result.output  # where to get it
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(_app(), ["score", "vbench", "--videos-dir", str(empty), "-d", "temporal_flickering"])
    assert result.exit_code == 2 and "no videos" in result.output
    assert not env_dir.exists()


def test_partial_result_files_do_not_count_as_complete(tmp_path):
    p = tmp_path / "temporal_flickering_eval_results.json"
    p.write_text('{"temporal_flickering": [0.9, [')
    assert score_vbench.read_complete_result(p, "temporal_flickering") is None
    p.write_text('{"temporal_flickering": [NaN, []]}')
    assert score_vbench.read_complete_result(p, "temporal_flickering") is None
    p.write_text('{"temporal_flickering": [0.9, []]}')
    assert score_vbench.read_complete_result(p, "temporal_flickering") == 0.9
    assert score_vbench.read_complete_result(p, "color") is None


def test_videos_view_only_when_the_folder_holds_other_files(tmp_path):
    videos = tmp_path / "v"
    _touch_videos(videos, "temporal_flickering")
    assert score_vbench.videos_view(videos, tmp_path / "out") is None
    (videos / "manifest.jsonl").write_text("{}\n")
    view = score_vbench.videos_view(videos, tmp_path / "out")
    assert sorted(p.name for p in view.iterdir()) == sorted(p.name for p in videos.glob("*.mp4"))
    assert all(p.is_symlink() for p in view.iterdir())


# --------------------------------------------------------------------------- end to end


def _write_mp4(path: Path, frames: list[np.ndarray], fps: int = 8) -> None:
    import av

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "0"} if codec == "libx264" else {"qscale": "1"}
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())


@pytest.mark.integration
def test_temporal_flickering_end_to_end_with_the_real_vbench(tmp_path):
    """Static videos score ~1, flickering ones lower; results land in the run layout."""
    static_prompt, flicker_prompt = [e.prompt for e in suite.load_vbench_suite(["temporal_flickering"])[:2]]
    run = tmp_path / "run"
    videos = run / "videos" / "tf_test"
    videos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    other = 255 - base
    for i in range(2):
        _write_mp4(videos / f"{static_prompt}-{i}.mp4", [base] * 8)
        _write_mp4(videos / f"{flicker_prompt}-{i}.mp4", [base if k % 2 == 0 else other for k in range(8)])
    (videos / "manifest.jsonl").write_text("{}\n")  # as `bench generate` leaves it

    env = dict(os.environ, VBENCH_CACHE_DIR=str(tmp_path / "vbench-cache"), COLUMNS="200")
    cmd = [sys.executable, "-m", "bench", "score", "vbench", "--run", str(run),
           "--dimension", "temporal_flickering", "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    out = run / "scores" / "tf_test-vbench"
    raw = json.loads((out / "temporal_flickering_eval_results.json").read_text())
    aggregate, per_video = raw["temporal_flickering"]
    scores = {Path(v["video_path"]).name: v["video_results"] for v in per_video}
    assert len(scores) == 4
    for v in per_video:  # paths point at the real videos, not the links folder
        assert Path(v["video_path"]).parent == videos.resolve()
    for i in range(2):
        assert scores[f"{static_prompt}-{i}.mp4"] > 0.99
        assert scores[f"{flicker_prompt}-{i}.mp4"] < 0.9
    assert aggregate == pytest.approx(np.mean(list(scores.values())))

    assert "WITHOUT VBench's static filter" in proc.stderr  # 2 unfiltered videos per prompt

    bench_dir = out / ".bench"
    summary = json.loads((bench_dir / "summary.json").read_text())
    assert summary == {"temporal_flickering": pytest.approx(aggregate)}
    assert sorted(p.name for p in out.iterdir()) == [  # only VBench's files beside the dot-folder
        ".bench", "temporal_flickering_eval_results.json", "temporal_flickering_full_info.json"]
    scoring = json.loads((bench_dir / "scoring.json").read_text())
    assert scoring["benchmark"] == "vbench"
    assert scoring["requested"] == ["temporal_flickering"]
    assert scoring["versions"]["numpy"].startswith("1.")
    assert scoring["versions"]["vbench"] == "0.1.5"
    assert scoring["status"] == "complete" and scoring["finished"]
    rec = scoring["dimensions"]["temporal_flickering"]
    assert rec["status"] == "complete" and rec["device"] == "cpu" and rec["seconds"] > 0
    assert rec["inputs"]["videos_dir"] == str(videos.resolve()) and rec["inputs"]["n_videos"] == 4
    assert rec["inputs"]["vbench"] == "0.1.5" and rec["inputs"]["torch"] == "2.14.1"
    assert rec["inputs"]["torch_env"] == {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    assert rec["static_filter"]["ran"] is False
    assert rec["aggregate"] == pytest.approx(aggregate)
    # VBench read the same prompt suite we ship.
    assert f"sha256: {rec['inputs']['full_info_sha256']}" in suite.SHIPPED_SOURCE.read_text()
    log = (bench_dir / "logs" / "temporal_flickering.log").read_text()
    assert "Evaluation results saved" in log
    assert "device=device(type='cpu')" in log  # a torch.device, as VBench's launcher passes it
    assert not (bench_dir / "partial").exists() and not (bench_dir / "videos-view").exists()

    # A rerun finds the dimension complete and current, and does not start VBench again.
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already scored" in again.stderr
    assert (bench_dir / "logs" / "temporal_flickering.log").read_text().count("=====") == 2  # one start + one exit


# --------------------------------------------------------------------------- the env


def _fake_env(root: Path, stamp: dict | None) -> vbench_env.VBenchEnv:
    (root / "bin").mkdir(parents=True)
    python = root / "bin" / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    (root / "pyvenv.cfg").write_text("home = /usr/bin\n")
    env = vbench_env.VBenchEnv(root)
    if stamp is not None:
        env.stamp_path.write_text(json.dumps(stamp))
    return env


def test_env_is_ready_only_with_a_matching_stamp(tmp_path):
    good = dict(vbench_env._wanted(), versions={"vbench": "0.1.5"})
    assert _fake_env(tmp_path / "a", good).is_ready()
    assert _fake_env(tmp_path / "a2", good).versions() == {"vbench": "0.1.5"}
    assert not _fake_env(tmp_path / "b", None).is_ready()  # interrupted: no stamp
    stale = dict(good, constraints_sha256="0" * 64)  # constraints changed since
    assert not _fake_env(tmp_path / "c", stale).is_ready()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / vbench_env.STAMP_NAME).write_text("{not json")
    assert not vbench_env.VBenchEnv(tmp_path / "d").is_ready()


def test_unfinished_env_is_removed_but_a_foreign_folder_is_not(tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / vbench_env.IN_PROGRESS_NAME).write_text("install started\n")
    (unfinished / "lib").mkdir()
    vbench_env._remove_unfinished(unfinished)
    assert not unfinished.exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(vbench_env.VBenchEnvError, match="refusing"):
        vbench_env._remove_unfinished(foreign)
    assert (foreign / "thesis.tex").exists()


def test_env_location_follows_the_env_var(monkeypatch, tmp_path):
    monkeypatch.delenv(vbench_env.ENV_VAR, raising=False)
    assert vbench_env.env_dir() == REPO / ".venv-vbench"
    monkeypatch.setenv(vbench_env.ENV_VAR, str(tmp_path / "elsewhere"))
    assert vbench_env.env_dir() == tmp_path / "elsewhere"


def _score_with_fake_vbench(tmp_path, env_dir, monkeypatch, driver_source: str):
    """`bench score vbench -d temporal_flickering` with VBench's environment as this interpreter
    and its driver swapped for `driver_source`; (the CLI's result, the output folder)."""
    (env_dir / "bin").mkdir(parents=True)
    (env_dir / "bin" / "python").symlink_to(sys.executable)
    monkeypatch.setattr(score_vbench.flow, "_install_env_with_progress", lambda: vbench_env.VBenchEnv(env_dir))
    fake_driver = tmp_path / "driver.py"
    fake_driver.write_text(driver_source)
    monkeypatch.setattr(score_vbench.running, "DRIVER", fake_driver)
    videos = tmp_path / "videos"
    _touch_videos(videos, "temporal_flickering")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        _app(), ["score", "vbench", "--videos-dir", str(videos), "-d", "temporal_flickering",
                 "--out", str(out), "--device", "cpu"],
    )
    return result, out


def test_a_failing_vbench_run_shows_the_log_tail_and_exits_non_zero(tmp_path, isolated_caches, monkeypatch):
    """The driver is swapped for a script that fails, run by this interpreter."""
    result, out = _score_with_fake_vbench(
        tmp_path, isolated_caches[1], monkeypatch,
        "import sys\nprint('loading things')\nprint('Boom: decoder exploded', file=sys.stderr)\nsys.exit(1)\n")
    assert result.exit_code == 1, result.output
    assert "VBench failed on temporal_flickering (exit 1)" in result.output
    assert "Boom: decoder exploded" in result.output  # the log's tail
    assert not (out / "temporal_flickering_eval_results.json").exists()
    assert json.loads((out / ".bench" / "scoring.json").read_text())["status"] == "failed: temporal_flickering"
    assert "Boom" in (out / ".bench" / "logs" / "temporal_flickering.log").read_text()


def test_a_nan_result_is_not_published(tmp_path, isolated_caches, monkeypatch):
    """VBench 'succeeds' with a nan aggregate when no video could be read."""
    result, out = _score_with_fake_vbench(
        tmp_path, isolated_caches[1], monkeypatch,
        "import sys, pathlib\n"
        "out = pathlib.Path(sys.argv[sys.argv.index('--output-dir') + 1])\n"
        "(out / 'temporal_flickering_eval_results.json').write_text('{\"temporal_flickering\": [NaN, []]}')\n")
    assert result.exit_code == 1 and "nan aggregate" in result.output
    assert not (out / "temporal_flickering_eval_results.json").exists()
