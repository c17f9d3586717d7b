"""`bench score tiny`: VBench's formulas, real vs degraded videos, result files, CLI + report, gates.

The evaluators are the shipped zoo's (bench/tinyworld/zoo, or $BENCH_TINY_ZOO): these tests
check that the trained evaluators read the world, so a missing zoo is a failure, not a skip.
"Real" videos are renders of `spec_for_prompt` for every suite prompt; each degradation is
applied to the prompts of the dimension it targets and must lower that dimension by a stated
margin.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from bench import report
from bench.scoring import cli as score_module
from bench.tinyworld import score as st
from bench.tinyworld import degrade
from bench.tinyworld import models as M
from bench.tinyworld.gates import evaluator_accuracy, gate_failures
from bench.tinyworld.render import render
from bench.tinyworld.suite import DIMENSIONS, tiny_suite, spec_for_prompt
from bench.tinyworld.world import ACTIONS, CAMERAS, COLORS, FPS, SHAPES, sample_object
from bench.tinyworld.zoo import load_tiny_evaluators, zoo_dir
from bench.video_io import tensor_to_video, write_mp4
from tests.helpers.cli import verb_app

SUITE = tiny_suite()
SUITE_INDEX = {e.prompt: k for k, e in enumerate(SUITE)}
PER_PROMPT = 3  # real videos per prompt (VBench uses 5; 3 keeps the tests at a few seconds)


# --------------------------------------------------------------------------- helpers


def _app() -> typer.Typer:
    return verb_app(score_module, report)


def real_spec(entry, index: int, seed: int = 910):
    return spec_for_prompt(entry, np.random.default_rng([seed, SUITE_INDEX[entry.prompt], index]))


def write_set(folder: Path, entries, per_prompt: int, spec_fn=None, video_fn=None, seed: int = 910) -> Path:
    """Render every prompt's `per_prompt` videos (optionally altered) as {prompt}-{i}.mp4.

    spec_fn(entry, spec, rng) returns the spec to render, or a pair of specs: the first
    half of the clip from one, the second half from the other."""
    items = [(e, i, real_spec(e, i, seed)) for e in entries for i in range(per_prompt)]
    rng = np.random.default_rng(0)
    specs = [spec_fn(e, s, rng) if spec_fn else s for e, _, s in items]
    pairs = [s if isinstance(s, tuple) else (s, s) for s in specs]
    first, second = render([a for a, _ in pairs]), render([b for _, b in pairs])
    half = first.shape[1] // 2
    videos = torch.cat([first[:, :half], second[:, half:]], dim=1)
    g = torch.Generator().manual_seed(0)
    for (e, i, _), v in zip(items, videos):
        if video_fn is not None:
            v = video_fn(v, g)
        write_mp4(folder / f"{e.prompt}-{i}.mp4", tensor_to_video(v), FPS)
    return folder


def entries_for(dimension: str):
    return [e for e in SUITE if dimension in e.dimensions]


@pytest.fixture(scope="module")
def evaluators():
    d = zoo_dir()
    # No skip: without trained evaluators the benchmark cannot be checked, which is a failure.
    return load_tiny_evaluators(d)


@pytest.fixture(scope="module")
def real_scores(tmp_path_factory, evaluators):
    """Real videos of every prompt and their scores on all 16 dimensions."""
    root = tmp_path_factory.mktemp("real")
    videos = write_set(root / "videos" / "tiny_real", SUITE, PER_PROMPT)
    (videos / "manifest.jsonl").write_text("{}\n")  # as `bench generate` leaves it: ignored
    out = root / "scores" / "tiny_real-tiny"
    scores = st.score_tiny(videos, out, evaluators=evaluators)
    return videos, out, scores


# --------------------------------------------------------------------------- VBench's formulas


def test_consistency_formula_is_vbenchs():
    # vbench/subject_consistency.py: mean over i >= 1 of (max(0, cos(f_i, f_{i-1})) + max(0, cos(f_i, f_0))) / 2
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # i=1: cos(f1,f0)=0, cos(f1,f0)=0 -> 0; i=2: cos(f2,f1)=0, cos(f2,f0)=-1 -> clamp 0 -> 0
    assert st.consistency_score(f) == 0.0
    f = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    c = 1 / math.sqrt(2)
    assert st.consistency_score(f) == pytest.approx(((c + c) / 2 + (c + 1) / 2) / 2, abs=1e-6)
    assert st.consistency_score(torch.ones(8, 5)) == pytest.approx(1.0)


def test_temporal_flickering_formula_is_vbenchs():
    frames = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    frames[1] = 51  # |diff| = 51 then 51: mean 51 -> (255 - 51) / 255 = 0.8
    assert st.temporal_flickering_score(frames) == pytest.approx(0.8)
    assert st.temporal_flickering_score(np.full((8, 4, 4, 3), 9, np.uint8)) == 1.0


def _moving_square(n: int = 8, speed: float = 2.0, size: int = 32) -> np.ndarray:
    frames = np.full((n, size, size, 3), 40, np.uint8)
    for t in range(n):
        x = int(round(4 + speed * t))
        frames[t, 10:20, x : x + 10] = (230, 200, 60)
    return frames


def test_motion_smoothness_scores_odd_frames_from_even_ones():
    moving = _moving_square()
    smooth = st.motion_smoothness_score(moving)
    assert 0.985 < smooth <= 1.0
    # vbench/motion_smoothness.py interpolates 1, 3, 5 from 0, 2, 4, 6: the last odd frame (7)
    # has no even successor and is never compared.
    altered = moving.copy()
    altered[7] = 0
    assert st.motion_smoothness_score(altered) == smooth
    # A frame out of order is not where interpolation puts it.
    jumpy = moving[[0, 5, 2, 1, 4, 3, 6, 7]]
    assert st.motion_smoothness_score(jumpy) < smooth - 0.01


def test_dynamic_degree_rule_is_vbenchs():
    # 32 px: thres = 6 * 32 / 256 = 0.75 px; 8 frames: count_num = round(4 * 8 / 16) = 2.
    static = np.repeat(_moving_square()[:1], 8, axis=0)
    det = st.dynamic_degree_details(static, fps=8)
    assert det["thres"] == pytest.approx(0.75) and det["count_num"] == 2
    assert len(det["pair_scores"]) == 7 and not det["dynamic"]
    det = st.dynamic_degree_details(_moving_square(speed=2.0), fps=8)
    assert det["dynamic"] and min(det["pair_scores"]) > 1.0
    # The top-5% flow of a 2 px/frame translation is close to 2 px.
    assert np.mean(det["pair_scores"]) == pytest.approx(2.0, abs=0.5)
    # Exactly one moving pair is below count_num: not dynamic.
    one = static.copy()
    one[4:] = _moving_square(speed=0.0)[0]
    one[4:, 10:20, 4:14] = 40
    one[4:, 10:20, 6:16] = (230, 200, 60)
    assert not st.dynamic_degree_details(one, fps=8)["dynamic"]
    # At 16 fps VBench keeps every round(16 / 8) = 2nd frame: 4 frames, count_num = 1.
    det = st.dynamic_degree_details(_moving_square(speed=1.0), fps=16)
    assert len(det["pair_scores"]) == 3 and det["count_num"] == 1 and det["dynamic"]


def test_position_score_follows_vbench_with_direction():
    a, b = (-0.5, 0.0), (0.5, 0.05)  # a left of b, boxes apart
    assert st.position_score("left of", a, b) == 1.0
    assert st.position_score("right of", a, b) == 0.0  # VBench would give 1: axis only
    assert st.position_score("above", a, b) == 0.0  # wrong axis
    assert st.position_score("above", (0.0, -0.5), (0.1, 0.5)) == 1.0
    assert st.position_score("below", (0.0, 0.5), (0.1, -0.5)) == 1.0
    # Overlapping boxes (side 0.58): IoU >= 0.1 scores 0.1 / IoU.
    a, b = (0.0, 0.0), (0.3, 0.0)
    inter = (0.58 - 0.3) * 0.58
    iou = inter / (2 * 0.58 * 0.58 - inter)
    assert st.position_score("left of", a, b) == pytest.approx(0.1 / iou)


def test_middle_sampling_is_vbenchs():
    assert st.middle_indices(8, 8) == list(range(8))
    assert st.middle_indices(16, 8) == list(range(8)) + [7] * 8  # padded with the last frame
    assert st.middle_indices(8, 16) == [0, 2, 4, 6, 8, 10, 12, 14]


# --------------------------------------------------------------------------- real vs degraded

# Real videos must reach these on every dimension (values in [0, 1]). Notes:
# * dynamic_degree: by VBench's threshold (0.75 px/frame at 32 px) the world's growing and
#   shrinking are slow (about 0.5 px/frame at the edge), so 2 of the 6 subject prompts are
#   borderline; the 4 translating / spinning ones must be dynamic.
# * overall_consistency is a cosine: about 0.77 on real videos here (ViCLIP's is about
#   0.2-0.3 on real videos), about 0.06 on another prompt's videos.
# * multiple_objects, spatial_relationship, appearance_style: the probe misses a few
#   low-contrast objects (a white cross on the room's grey wall, a blue star on the forest
#   floor) and an outline-style cross reads as solid (its arms are about as thin as the
#   outline): a miss costs a whole static video, 1/15 of these dimensions.
REAL_MINIMUM = {
    "subject_consistency": 0.93,
    "background_consistency": 0.99,
    "temporal_flickering": 0.99,
    "motion_smoothness": 0.99,
    "dynamic_degree": 0.60,
    "aesthetic_quality": 0.95,
    "imaging_quality": 0.97,
    "object_class": 0.93,
    "multiple_objects": 0.80,
    "human_action": 0.93,
    "color": 0.93,
    "spatial_relationship": 0.80,
    "scene": 0.93,
    "appearance_style": 0.80,
    "temporal_style": 0.93,
    "overall_consistency": 0.65,
}


def test_real_videos_score_near_the_top(real_scores):
    _, out, scores = real_scores
    assert list(scores) == list(DIMENSIONS)
    low = {d: round(v, 4) for d, v in scores.items() if v < REAL_MINIMUM[d]}
    assert not low, f"real videos below the minimum: {low} (minimums {REAL_MINIMUM})"


def _other(values, current, rng, exclude=()):
    pool = [v for v in values if v != current and v not in exclude]
    return str(rng.choice(pool))


def _wrong_color(entry, spec, rng):
    o = spec.objects[0]
    return replace(spec, objects=(replace(o, color=_other(COLORS, o.color, rng)), *spec.objects[1:]))


def _wrong_shape(entry, spec, rng):
    o = spec.objects[0]
    return replace(spec, objects=(replace(o, shape=_other(SHAPES, o.shape, rng)),))


def _swapped_relation(entry, spec, rng):
    a, b = spec.objects
    return replace(spec, objects=(replace(a, x=b.x, y=b.y), replace(b, x=a.x, y=a.y)))


def _wrong_action(entry, spec, rng):
    o = spec.objects[0]
    action = _other(ACTIONS, o.action, rng, exclude=("spinning",) if o.shape == "circle" else ())
    new = sample_object(rng, action=action, shape=o.shape, color=o.color)
    return replace(spec, objects=(replace(new, color_named=o.color_named),))


def _wrong_camera(entry, spec, rng):
    return replace(spec, camera=_other(CAMERAS, spec.camera, rng))


def _subject_changes(entry, spec, rng):
    """Halfway through, another object (shape and colour) takes the subject's place."""
    o = spec.objects[0]
    shape = _other(SHAPES, o.shape, rng, exclude=("circle",) if o.action == "spinning" else ())
    return spec, replace(spec, objects=(replace(o, shape=shape, color=_other(COLORS, o.color, rng)),))


def _another_prompt(entry, spec, rng):
    """A clip of the next overall_consistency prompt, filed under this prompt's name."""
    prompts = entries_for("overall_consistency")
    other = prompts[(prompts.index(entry) + 1) % len(prompts)]
    return spec_for_prompt(other, rng)


SHUFFLE = [3, 6, 1, 7, 0, 5, 2, 4]

# (name, dimension, spec change, video change, minimum drop of the aggregate below real).
# Margins are about half the drop measured with the shipped zoo (seeds 910 and 911 agree
# to 0.01), so that they fail when a dimension stops seeing its degradation.
DEGRADATIONS = [
    ("blur", "imaging_quality", None, lambda v, g: degrade.blur(v[None], 0.8)[0], 0.3),
    ("noise", "imaging_quality", None, lambda v, g: degrade.noise(v[None], 0.8, g)[0], 0.3),
    ("washed out", "aesthetic_quality", None, lambda v, g: degrade.desaturate(v[None], 0.8)[0], 0.2),
    ("shuffle", "motion_smoothness", None, lambda v, g: v[SHUFFLE], 0.01),
    # The probe's object features hardly depend on where the object is (DINO's hardly do
    # either): shuffling lowers subject consistency by about 0.008 only; another object
    # halfway through by about 0.19.
    ("shuffle", "subject_consistency", None, lambda v, g: v[SHUFFLE], 0.004),
    ("subject changes", "subject_consistency", _subject_changes, None, 0.1),
    ("flicker", "temporal_flickering", None, lambda v, g: degrade.flicker(v[None], 1.0, g)[0], 0.05),
    ("wrong colour", "color", _wrong_color, None, 0.5),
    ("wrong shape", "object_class", _wrong_shape, None, 0.5),
    ("swapped relation", "spatial_relationship", _swapped_relation, None, 0.5),
    ("wrong action", "human_action", _wrong_action, None, 0.5),
    ("wrong camera", "temporal_style", _wrong_camera, None, 0.5),
    ("static video", "dynamic_degree", None, lambda v, g: v[:1].expand_as(v).clone(), 0.5),
    ("another prompt's video", "overall_consistency", _another_prompt, None, 0.3),
]


@pytest.mark.parametrize("name,dimension,spec_fn,video_fn,margin", DEGRADATIONS,
                         ids=[f"{n}->{d}" for n, d, *_ in DEGRADATIONS])
def test_degradation_lowers_its_dimension(tmp_path, real_scores, evaluators, name, dimension, spec_fn, video_fn, margin):
    folder = write_set(tmp_path / "videos", entries_for(dimension), PER_PROMPT, spec_fn, video_fn)
    degraded = st.score_tiny(folder, tmp_path / "scores", [dimension], evaluators=evaluators)[dimension]
    real = real_scores[2][dimension]
    assert degraded <= real - margin, f"{name}: {dimension} {degraded:.4f} vs real {real:.4f} (margin {margin})"


# --------------------------------------------------------------------------- result files, reruns, errors


def test_result_files_are_vbench_format(real_scores):
    videos, out, scores = real_scores
    for d in DIMENSIONS:
        data = json.loads((out / f"{d}_eval_results.json").read_text())
        assert list(data) == [d]
        aggregate, rows = data[d]
        assert rows and aggregate == pytest.approx(np.mean([r["video_results"] for r in rows]))
        assert aggregate == scores[d]
        for r in rows:
            assert 0.0 <= r["video_results"] <= 1.0
            assert Path(r["video_path"]).parent == videos and r["prompt"] in SUITE_INDEX
        if d != "color":  # color leaves out videos whose object is never detected (as VBench)
            assert len(rows) == PER_PROMPT * len(entries_for(d))
    scoring = json.loads((out / "bench_scoring.json").read_text())
    assert scoring["benchmark"] == "tiny" and scoring["status"] == "complete"
    assert scoring["dimensions"] == list(DIMENSIONS) and scoring["finished"]
    assert json.loads((out / "summary.json").read_text()) == scores
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    per_video = st.load_tiny_per_video(out)
    assert {r["prompt"] for r in per_video["scene"]} == {e.prompt for e in entries_for("scene")}


def test_rerun_skips_finished_dimensions_and_force_redoes(tmp_path):
    folder = write_set(tmp_path / "videos", entries_for("temporal_flickering"), 2)
    out = tmp_path / "scores"
    first = st.score_tiny(folder, out, ["temporal_flickering"])  # needs no evaluator
    result = out / "temporal_flickering_eval_results.json"
    stamp = result.stat().st_mtime_ns
    assert st.score_tiny(folder, out, ["temporal_flickering"]) == first
    assert result.stat().st_mtime_ns == stamp
    assert json.loads((out / "bench_scoring.json").read_text())["skipped_already_complete"] == ["temporal_flickering"]
    st.score_tiny(folder, out, ["temporal_flickering"], force=True)
    assert result.stat().st_mtime_ns != stamp
    assert json.loads((out / "bench_scoring.json").read_text())["skipped_already_complete"] == []


def test_missing_videos_are_listed(tmp_path):
    folder = write_set(tmp_path / "videos", entries_for("temporal_flickering"), 2)
    gone = f"{entries_for('temporal_flickering')[1].prompt}-1.mp4"
    (folder / gone).unlink()
    with pytest.raises(st.TinyScoreError) as err:
        st.score_tiny(folder, tmp_path / "scores", ["temporal_flickering", "color"])
    msg = str(err.value)
    assert gone in msg and "temporal_flickering: 1 missing (every prompt needs indices 0..1)" in msg
    assert "color: 6 missing" in msg and "a red square-0.mp4" in msg
    assert not (tmp_path / "scores").exists()  # nothing written
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(st.TinyScoreError, match="no videos of the tiny suite"):
        st.tiny_per_video(empty, ["scene"])


def test_cli_names_an_undecodable_video_and_fails(tmp_path):
    folder = write_set(tmp_path / "videos", entries_for("temporal_flickering"), 1)
    bad = folder / f"{entries_for('temporal_flickering')[2].prompt}-0.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    result = CliRunner().invoke(_app(), ["score", "tiny", "--videos-dir", str(folder), "-d", "temporal_flickering"],
                                env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert "cannot decode" in result.output and bad.name in result.output
    result = CliRunner().invoke(_app(), ["score", "tiny", "--videos-dir", str(folder), "-d", "sharpness"])
    assert result.exit_code == 2 and "unknown dimension" in result.output


def test_suite_info_json_maps_files_to_prompts(tmp_path, evaluators):
    folder = tmp_path / "custom"
    entry = entries_for("scene")[0]
    videos = render([real_spec(entry, i) for i in range(2)])
    for i, v in enumerate(videos):
        write_mp4(folder / f"clip_{i:03d}.mp4", tensor_to_video(v), FPS)
    info = [{"prompt_en": entry.prompt, "dimension": ["scene"], "auxiliary_info": entry.auxiliary_info,
             "video_list": ["clip_000.mp4", "clip_001.mp4"]}]
    (folder / "suite_info.json").write_text(json.dumps(info))
    rows = st.tiny_per_video(folder, ["scene"], evaluators)["scene"]
    assert [Path(r["video_path"]).name for r in rows] == ["clip_000.mp4", "clip_001.mp4"]
    assert {r["prompt"] for r in rows} == {entry.prompt}
    info[0]["dimension"] = ["colour"]
    (folder / "suite_info.json").write_text(json.dumps(info))
    with pytest.raises(st.TinyScoreError, match="unknown dimension"):
        st.tiny_per_video(folder, ["scene"], evaluators)


def test_cli_end_to_end_then_report(tmp_path):
    """`bench score tiny --run RUN` on one real video per prompt, then `bench report RUN`."""
    run = tmp_path / "run"
    write_set(run / "videos" / "tiny_1step", SUITE, 1)
    runner = CliRunner()
    result = runner.invoke(_app(), ["score", "tiny", "--run", str(run)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = run / "scores" / "tiny_1step-tiny"
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary) == list(DIMENSIONS)
    scoring = json.loads((out / "bench_scoring.json").read_text())
    assert scoring["benchmark"] == "tiny" and scoring["label"] == "tiny_1step"
    assert scoring["zoo"]["manifest_sha256"] and scoring["zoo"]["dir"] == str(zoo_dir()) and scoring["command"]

    prefix = tmp_path / "reports" / "tiny"
    result = runner.invoke(_app(), ["report", str(run), "--out", str(prefix)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    import pandas as pd

    table = pd.read_csv(prefix.with_suffix(".csv"))
    assert list(table["model"]) == ["run"]
    row = table.iloc[0]
    for d in DIMENSIONS:
        assert row[d] == pytest.approx(100 * summary[d])
    composites = report.composite_scores(summary, "tiny")
    assert row["total_score"] == pytest.approx(100 * composites["total_score"])
    # A rerun keeps every dimension.
    result = runner.invoke(_app(), ["score", "tiny", "--run", str(run)], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "already scored" in result.output


def test_progress_is_reported(tmp_path, evaluators):
    """A rich Progress gets one task per stage; a callable gets (done, total) in videos."""
    from rich.console import Console
    from rich.progress import Progress

    entries = entries_for("human_action") + entries_for("dynamic_degree")
    folder = write_set(tmp_path / "videos", entries, 1)
    dims = ["human_action", "dynamic_degree", "motion_smoothness"]
    with Progress(console=Console(file=io.StringIO(), force_terminal=False)) as progress:
        st.tiny_per_video(folder, dims, evaluators, progress)
        stages = {t.description: (t.completed, t.total) for t in progress.tasks}
    n_action, n_subject = len(entries_for("human_action")), len(entries_for("dynamic_degree"))
    assert stages == {"decode videos": (len(entries),) * 2, "clip probe": (n_action,) * 2,
                      "optical flow": (2 * n_subject,) * 2}  # one step per video and flow dimension
    calls = []
    st.score_tiny(folder, tmp_path / "scores", dims, evaluators, progress=lambda done, total: calls.append((done, total)))
    total = len(entries) + n_action + 2 * n_subject
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


# --------------------------------------------------------------------------- evaluator gates


# What the shipped evaluators must reach on clean held-out renders (64 clips here; the
# README has the numbers on 512). The video-text model misses the 95% gate for top-1
# retrieval among 7 one-factor-changed captions (about 0.4; chance 0.125): it is held to
# what it reaches, well above chance, so that a regression still fails.
TRAINED_MINIMUM = {"presence": 0.95, "color": 0.95, "scene": 0.95, "style": 0.95, "action": 0.95, "camera": 0.95,
                   "quality_imaging": 0.95, "quality_aesthetic": 0.9,
                   "overall_consistency_top1": 0.3, "overall_consistency_pairwise": 0.75}


def test_trained_evaluators_read_held_out_renders(evaluators):
    acc = evaluator_accuracy(evaluators, n_clips=64)
    low = {k: round(acc[k], 3) for k, v in TRAINED_MINIMUM.items() if acc[k] < v}
    assert not low, f"trained evaluators below their minimum: {low}"
    assert acc["position_error_px"] < 1.5


def test_gates_fail_for_an_untrained_evaluator(evaluators):
    torch.manual_seed(0)
    broken = {**evaluators, "probe": M.FrameProbe().eval(), "clip": M.ClipProbe().eval()}
    acc = evaluator_accuracy(broken, n_clips=16)
    failed = " ".join(gate_failures(acc))
    for key in ("presence", "color", "scene", "style", "action", "camera", "position_error_px"):
        assert key in failed


def test_reads_the_suite_info_that_bench_generate_writes(tmp_path):
    """The two verbs meet in this file: generate's layout must be what score tiny reads."""
    import json

    from bench.generate import suite_info
    from bench.generate import load_suite as load_generate_suite
    from bench.tinyworld.score import load_suite as load_score_suite

    items, source = load_generate_suite("tiny", ["color"])
    (tmp_path / "suite_info.json").write_text(json.dumps(suite_info(items, source, 5, False)))
    loaded = load_score_suite(tmp_path)
    assert {e.prompt for e in loaded.entries} == {i.prompt for i in items}
    assert all(e.dimensions == ("color",) for e in loaded.entries)
