"""The VBench prompt suite: counts, file naming, bad prompts, dimension subsets."""

from __future__ import annotations

import hashlib

import pytest

from bench.vbench import suite


def test_counts_entries_distinct_prompts_and_files():
    assert len(suite.load_full_info()) == 946
    entries = suite.load_vbench_suite()
    assert len(entries) == 944
    assert len({e.prompt for e in entries}) == 944
    files = suite.planned_video_files()
    assert len(files) == 4720
    assert len(set(files)) == 4720


def test_shipped_copy_matches_its_recorded_source():
    source = suite.SHIPPED_SOURCE.read_text(encoding="utf-8")
    digest = hashlib.sha256(suite.SHIPPED_FULL_INFO.read_bytes()).hexdigest()
    assert f"sha256: {digest}" in source
    assert "version: 0.1.5" in source


def test_main_env_reads_the_shipped_copy():
    # The main env does not have vbench (it clashes with our pins); if it ever does,
    # the installed file wins and this test says so.
    src = suite.suite_source()
    if src.origin == "shipped copy":
        assert src.path == suite.SHIPPED_FULL_INFO
        assert src.version == "0.1.5"
    else:
        assert src.path.name == "VBench_full_info.json"


def test_duplicates_are_merged_with_all_their_dimensions():
    by_prompt = {e.prompt: e for e in suite.load_vbench_suite()}
    e = by_prompt["The bund Shanghai, oil painting"]
    assert set(e.dimensions) == {
        "appearance_style",
        "overall_consistency",
        "aesthetic_quality",
        "imaging_quality",
    }
    assert e.auxiliary_info["appearance_style"] == {"appearance_style": "oil painting"}


def test_standard_file_names():
    assert suite.standard_video_filenames("a toilet, frozen in time") == [
        f"a toilet, frozen in time-{i}.mp4" for i in range(5)
    ]
    assert suite.standard_video_filenames("x", n_videos=2) == ["x-0.mp4", "x-1.mp4"]
    files = suite.planned_video_files()
    assert "In a still frame, a stop sign-0.mp4" in files
    assert "In a still frame, a stop sign-4.mp4" in files
    assert "In a still frame, a stop sign-5.mp4" not in files


@pytest.mark.parametrize(
    "prompt, words",
    [
        ("a cat / a dog", ["'a cat / a dog'", "'/'"]),
        ("nul\0byte", ["NUL"]),
        ("é" * 125, ["bytes", "255"]),  # 250 bytes + "-4.mp4" = 256 bytes
        ("", ["empty"]),
    ],
)
def test_bad_prompt_raises_a_clear_error(prompt, words):
    with pytest.raises(ValueError) as err:
        suite.standard_video_filenames(prompt)
    for w in words:
        assert w in str(err.value)


def test_name_limit_is_in_bytes_with_the_suffix():
    ok = "a" * (255 - len("-4.mp4"))
    assert suite.standard_video_filenames(ok)[-1].encode() == (ok + "-4.mp4").encode()
    with pytest.raises(ValueError):
        suite.standard_video_filenames(ok + "a")


def test_dimension_subsets():
    tf = suite.load_vbench_suite(["temporal_flickering"])
    assert len(tf) == 75
    assert all("temporal_flickering" in e.dimensions for e in tf)
    # Shared prompt lists: these three use the same 93 prompts (VBench_full_info.json).
    sets = [
        {e.prompt for e in suite.load_vbench_suite([d])}
        for d in ("overall_consistency", "aesthetic_quality", "imaging_quality")
    ]
    assert len(sets[0]) == 93 and sets[0] == sets[1] == sets[2]
    both = suite.load_vbench_suite(["subject_consistency", "temporal_flickering"])
    assert len(both) == 72 + 75
    assert len(suite.planned_video_files(["temporal_flickering"])) == 375
    # Every dimension is served by some prompt, and the union is the whole suite.
    union = set()
    for d in suite.ALL_DIMENSIONS:
        prompts = {e.prompt for e in suite.load_vbench_suite([d])}
        assert prompts, d
        union |= prompts
    assert len(union) == 944


def test_unknown_dimension_is_rejected():
    with pytest.raises(ValueError, match="temporal_flicker"):
        suite.load_vbench_suite(["temporal_flicker"])


def test_temporal_flickering_oversampling_plan():
    rule = suite.TEMPORAL_FLICKERING_OVERSAMPLING
    assert (rule.n_sampled, rule.n_kept) == (25, 5)
    p = "a toilet, frozen in time"
    names = suite.oversampled_video_filenames(p)
    assert names[0] == f"{p}-0.mp4" and names[-1] == f"{p}-24.mp4" and len(names) == 25
    # VBench's filter walks a plain string sort: -10 comes before -2.
    order = suite.static_filter_scan_order(p)
    assert order.index(f"{p}-10.mp4") < order.index(f"{p}-2.mp4")
    assert suite.static_filter_kept_filenames(p) == [
        f"filtered_videos/{p}-{i}.mp4" for i in range(5)
    ]
    files = suite.planned_video_files(oversample_temporal_flickering=True)
    assert len(files) == 4720 + 75 * 20
    assert len(set(files)) == len(files)
    assert f"{p}-24.mp4" in files
