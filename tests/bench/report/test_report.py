"""`bench report`: VBench aggregation, result loading, bad input, outputs, CLI help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from tests.helpers.cli import verb_app
from bench import report
from bench.vbench.constants import QUALITY_DIMENSIONS, SEMANTIC_DIMENSIONS, VBENCH_DIMENSIONS

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "vbench_published"

# Published VBench results of public models, in percent: Total, Quality, Semantic, then the
# 16 dimensions in VBENCH_DIMENSIONS order (subject_consistency ... overall_consistency).
# Source: Show-o2, arXiv 2506.15564v3 (https://arxiv.org/html/2506.15564v3), Table 8
# ("Comparison with text-to-video models on the VBench benchmark"), rows ModelScope,
# VideoCrafter-2.0, AnimateDiff-V2 and CogVideoX (5B); these are the VBench leaderboard's
# numbers. ModelScope's and VideoCrafter-2.0's Totals also appear as the teachers in the
# T2V-Turbo paper (arXiv 2405.18750, Table 1). The same dimension values are stored in
# tests/data/vbench_published/<folder>/ (see SOURCES.md there).
PUBLISHED: dict[str, tuple[tuple[float, float, float], tuple[float, ...]]] = {
    "modelscope": (
        (75.75, 78.05, 66.54),
        (89.87, 95.29, 98.28, 95.79, 66.39, 52.06, 58.57,
         82.25, 38.98, 92.40, 81.72, 33.68, 39.26, 23.39, 25.37, 25.67),
    ),
    "videocrafter2": (
        (80.44, 82.20, 73.42),
        (96.85, 98.22, 98.41, 97.73, 42.50, 63.13, 67.22,
         92.55, 40.66, 95.00, 92.92, 35.86, 55.29, 25.13, 25.84, 28.23),
    ),
    "animatediff_v2": (
        (80.27, 82.90, 69.75),
        (95.30, 97.68, 98.75, 97.76, 40.83, 67.16, 70.10,
         90.90, 36.88, 92.60, 87.47, 34.60, 50.19, 22.42, 26.03, 27.04),
    ),
    "cogvideox_5b": (
        (81.61, 82.75, 77.04),
        (96.23, 96.52, 98.66, 96.92, 70.97, 61.98, 62.90,
         85.23, 62.11, 99.40, 82.81, 66.35, 53.20, 24.91, 25.38, 27.59),
    ),
}
# Published values are rounded to 2 decimals; recomputing from rounded dimensions lands
# within 0.01 points of the published composites.
TOLERANCE = 0.01


def published_fractions(model: str) -> dict[str, float]:
    return {d: v / 100 for d, v in zip(VBENCH_DIMENSIONS, PUBLISHED[model][1])}


def write_results(folder: Path, dims: dict[str, float], name: str = "run", benchmark: str | None = None) -> Path:
    """A VBench-format result file `{name}_eval_results.json` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {d: [v, [{"video_path": f"{d}-0.mp4", "video_results": v}]] for d, v in dims.items()}
    (folder / f"{name}_eval_results.json").write_text(json.dumps(data))
    if benchmark is not None:
        (folder / "bench_scoring.json").write_text(json.dumps({"benchmark": benchmark}))
    return folder


def cli_app() -> typer.Typer:
    return verb_app(report)


def run_cli(*args: str):
    return CliRunner().invoke(cli_app(), ["report", *args])


# ---------------------------------------------------------------------------------------
# Aggregation


@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_composites_reproduce_published_vbench_scores(model: str) -> None:
    (total, quality, semantic), _ = PUBLISHED[model]
    scores = report.composite_scores(published_fractions(model), "vbench")
    assert scores is not None
    assert abs(100 * scores["total_score"] - total) <= TOLERANCE
    assert abs(100 * scores["quality_score"] - quality) <= TOLERANCE
    assert abs(100 * scores["semantic_score"] - semantic) <= TOLERANCE


def test_total_is_four_quality_plus_semantic_over_five() -> None:
    # Quality dims at their normalisation max (normalised 1), semantic at their min (0):
    # Quality = 1, Semantic = 0, so Total = 4/5 (not 1/5 as with the weights swapped).
    table = report.aggregation_table("vbench")
    dims = {d: table.normalization[d][1] for d in QUALITY_DIMENSIONS}
    dims |= {d: table.normalization[d][0] for d in SEMANTIC_DIMENSIONS}
    scores = report.composite_scores(dims, "vbench")
    assert scores == pytest.approx({"total_score": 0.8, "quality_score": 1.0, "semantic_score": 0.0})


def test_dynamic_degree_has_half_weight() -> None:
    # Quality is a weighted mean with weight 0.5 on dynamic_degree and 1 on the other six:
    # raising dynamic_degree by 0.13 raises Quality by 0.5 * 0.13 / 6.5 = 0.01.
    dims = {d: 0.5 for d in VBENCH_DIMENSIONS}
    base = report.composite_scores(dims, "tiny")
    dims["dynamic_degree"] += 0.13
    moved = report.composite_scores(dims, "tiny")
    assert moved["quality_score"] - base["quality_score"] == pytest.approx(0.01)
    assert moved["semantic_score"] == pytest.approx(base["semantic_score"])


def test_tiny_benchmark_uses_identity_normalisation() -> None:
    dims = {d: 0.5 for d in VBENCH_DIMENSIONS}
    assert report.composite_scores(dims, "tiny") == pytest.approx(
        {"total_score": 0.5, "quality_score": 0.5, "semantic_score": 0.5}
    )
    # The same values under VBench's constants normalise differently (e.g. subject_consistency's
    # min is 0.1462), so the tiny table really is a separate one.
    assert report.composite_scores(dims, "vbench")["quality_score"] != pytest.approx(0.5)


def test_missing_dimension_gives_no_composites_not_zero() -> None:
    dims = published_fractions("videocrafter2")
    del dims["scene"]
    assert report.composite_scores(dims, "vbench") is None


def test_composite_scores_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown dimension"):
        report.composite_scores({"subject consistency": 0.9}, "vbench")
    with pytest.raises(ValueError, match="unknown benchmark"):
        report.composite_scores({}, "evalcrafter")


# ---------------------------------------------------------------------------------------
# Loading


def test_fixture_folders_hold_the_cited_numbers_spread_over_two_files() -> None:
    for model in PUBLISHED:
        (loaded,) = report.load_results(FIXTURES / model)
        assert loaded.name == model
        assert loaded.benchmark == "vbench"
        assert len(loaded.source_files) == 2
        assert loaded.dimensions == pytest.approx(published_fractions(model), abs=1e-12)
        assert list(loaded.dimensions) == list(VBENCH_DIMENSIONS)
        assert loaded.missing_dimensions == ()


def test_multi_file_folder_keeps_per_video_lists(tmp_path: Path) -> None:
    dims = published_fractions("modelscope")
    folder = tmp_path / "modelscope_ours"
    write_results(folder, {d: dims[d] for d in QUALITY_DIMENSIONS[:3]}, name="a")
    write_results(folder, {d: dims[d] for d in QUALITY_DIMENSIONS[3:]}, name="b")
    write_results(folder, {d: dims[d] for d in SEMANTIC_DIMENSIONS}, name="c")
    # The same dimension twice with the same value (an evaluate call repeated) is fine.
    write_results(folder, {"scene": dims["scene"]}, name="d")
    (loaded,) = report.load_results(folder)
    assert loaded.name == "modelscope_ours"
    assert len(loaded.source_files) == 4
    assert loaded.missing_dimensions == ()
    assert loaded.per_video["color"] == [{"video_path": "color-0.mp4", "video_results": dims["color"]}]


def test_imaging_quality_per_video_values_may_be_0_to_100(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    data = {"imaging_quality": [0.65, [{"video_path": "a-0.mp4", "video_results": 65.0}]]}
    (folder / "iq_eval_results.json").write_text(json.dumps(data))
    (loaded,) = report.load_results(folder)
    assert loaded.dimensions == {"imaging_quality": 0.65}


def test_run_directory_gives_one_row_per_scores_label(tmp_path: Path) -> None:
    dims = {d: 0.5 for d in VBENCH_DIMENSIONS}
    run = tmp_path / "runs" / "turbo_vc2"
    write_results(run / "scores" / "tiny_4step", dims, benchmark="tiny")
    write_results(run / "scores" / "tiny_teacher50", dims, benchmark="tiny")
    (run / "videos" / "tiny_4step").mkdir(parents=True)
    models = report.load_results(run)
    assert [m.name for m in models] == ["turbo_vc2/tiny_4step", "turbo_vc2/tiny_teacher50"]
    assert {m.benchmark for m in models} == {"tiny"}

    single = tmp_path / "runs" / "vcm_vc2"
    write_results(single / "scores" / "vbench_4step", dims)
    (only,) = report.load_results(single)
    assert only.name == "vcm_vc2"
    assert only.benchmark == "vbench"


# ---------------------------------------------------------------------------------------
# CLI and outputs


def test_cli_writes_table_and_plots_reproducing_published_scores(tmp_path: Path) -> None:
    prefix = tmp_path / "reports" / "nested" / "published"
    paths = [str(FIXTURES / m) for m in sorted(PUBLISHED)]
    result = run_cli(*paths, "--out", str(prefix))
    assert result.exit_code == 0, result.output

    csv = pd.read_csv(prefix.with_suffix(".csv"))
    assert list(csv.columns) == list(report.REPORT_COLUMNS)
    assert list(csv["model"]) == sorted(PUBLISHED)
    for _, row in csv.iterrows():
        (total, quality, semantic), dims = PUBLISHED[row["model"]]
        assert abs(row["total_score"] - total) <= TOLERANCE
        assert abs(row["quality_score"] - quality) <= TOLERANCE
        assert abs(row["semantic_score"] - semantic) <= TOLERANCE
        # Dimension columns are the raw values x100, kept at full precision.
        assert [row[d] for d in VBENCH_DIMENSIONS] == pytest.approx(list(dims), abs=1e-9)

    markdown = prefix.with_suffix(".md").read_text()
    assert "| videocrafter2 | 80.44 | 82.20 | 73.42 | 96.85 |" in markdown
    assert "| model | total_score | quality_score | semantic_score | subject_consistency |" in markdown

    for suffix in ("_dimensions.png", "_composites.png"):
        png = prefix.with_name(prefix.name + suffix)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Atomic writes leave no temp files behind.
    assert sorted(p.name for p in prefix.parent.iterdir()) == sorted(
        p.name for p in report.output_paths(prefix)
    )
    assert "80.44" in result.stdout  # the table is printed too


def test_cli_incomplete_model_has_empty_composites_and_a_warning(tmp_path: Path) -> None:
    dims = published_fractions("videocrafter2")
    partial = {d: v for d, v in dims.items() if d not in ("scene", "color")}
    folder = write_results(tmp_path / "vc2_partial", partial)
    prefix = tmp_path / "out" / "r"
    result = run_cli(str(folder), str(FIXTURES / "modelscope"), "--out", str(prefix))
    assert result.exit_code == 0, result.output
    assert "vc2_partial" in result.stderr
    assert "color" in result.stderr and "scene" in result.stderr

    csv = pd.read_csv(prefix.with_suffix(".csv")).set_index("model")
    assert csv.loc["vc2_partial", ["total_score", "quality_score", "semantic_score"]].isna().all()
    assert pd.isna(csv.loc["vc2_partial", "scene"])  # shown as missing, never as 0
    assert csv.loc["vc2_partial", "subject_consistency"] == pytest.approx(96.85)
    assert not csv.loc["modelscope", ["total_score"]].isna().any()
    line = next(ln for ln in prefix.with_suffix(".md").read_text().splitlines() if ln.startswith("| vc2_partial"))
    assert line.startswith("| vc2_partial | — | — | — | 96.85 |")


def _bad_invalid_json(folder: Path) -> Path:
    bad = folder / "broken_eval_results.json"
    bad.write_text('{"subject_consistency": [0.9, []')
    return bad


def _bad_unknown_dimension(folder: Path) -> Path:
    bad = folder / "other_eval_results.json"
    bad.write_text(json.dumps({"subject consistency": [0.9, []]}))
    return bad


def _bad_out_of_range(folder: Path) -> Path:
    bad = folder / "pct_eval_results.json"
    bad.write_text(json.dumps({"aesthetic_quality": [63.13, []]}))
    return bad


def _bad_conflicting_duplicate(folder: Path) -> Path:
    (folder / "a_eval_results.json").write_text(json.dumps({"scene": [0.5529, []]}))
    bad = folder / "b_eval_results.json"
    bad.write_text(json.dumps({"scene": [0.5, []]}))
    return bad


def _bad_no_result_files(folder: Path) -> Path:
    (folder / "notes.txt").write_text("VBench has not run yet\n")
    return folder


def _bad_scoring_file(folder: Path) -> Path:
    (folder / "x_eval_results.json").write_text(json.dumps({"scene": [0.5, []]}))
    bad = folder / "bench_scoring.json"
    bad.write_text(json.dumps({"benchmark": "evalcrafter"}))
    return bad


@pytest.mark.parametrize(
    "make_bad",
    [
        _bad_invalid_json,
        _bad_unknown_dimension,
        _bad_out_of_range,
        _bad_conflicting_duplicate,
        _bad_no_result_files,
        _bad_scoring_file,
    ],
)
def test_cli_bad_input_exits_2_names_the_file_and_writes_nothing(tmp_path: Path, make_bad) -> None:
    folder = tmp_path / "bad_model"
    folder.mkdir()
    bad = make_bad(folder)
    out_dir = tmp_path / "out"
    # A good model listed first: nothing may be written for it either.
    result = run_cli(str(FIXTURES / "videocrafter2"), str(folder), "--out", str(out_dir / "report"))
    assert result.exit_code == 2, result.output
    assert str(bad) in result.stderr
    assert not out_dir.exists()


def test_cli_nonexistent_path_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_model"
    result = run_cli(str(missing), "--out", str(tmp_path / "out" / "r"))
    assert result.exit_code == 2
    assert str(missing) in result.stderr
    assert not (tmp_path / "out").exists()


def test_write_report_api_extra_columns(tmp_path: Path) -> None:
    models = [m for name in ("videocrafter2", "modelscope") for m in report.load_results(FIXTURES / name)]
    written = report.write_report(models, tmp_path / "ablation", extra_columns={"teacher": ["VC2", "MS"]})
    assert written == report.output_paths(tmp_path / "ablation")
    csv = pd.read_csv(tmp_path / "ablation.csv")
    assert list(csv.columns[:3]) == ["model", "teacher", "total_score"]
    assert list(csv["teacher"]) == ["VC2", "MS"]
    with pytest.raises(ValueError, match="values for 2 models"):
        report.build_report(models, extra_columns={"teacher": ["VC2"]})


@pytest.mark.integration
def test_help_documents_the_verb() -> None:
    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    top_help = run("--help")
    assert "report" in top_help and "Aggregate VBench results" in top_help
    verb_help = run("report", "--help")
    assert "--out" in verb_help
    assert "Example: bench report" in verb_help
