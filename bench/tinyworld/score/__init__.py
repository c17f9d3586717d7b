"""`bench score tiny`: the tiny world's benchmark, VBench's 16 dimensions on tiny-world videos.

Each dimension measures in the tiny world what VBench's measures, with the tiny world's own
evaluators (bench/tinyworld/models.py, trained by `bench zoo build`) in the role of VBench's
pretrained ones, and VBench's own formulas wherever a formula is not a network
(Vchitect/VBench `vbench/<dimension>.py`, cited per function below). Per-video values are in
[0, 1], 1 best; a dimension's aggregate is the mean of its per-video values.

Which prompt serves which dimension comes from the tiny suite (bench/tinyworld/suite.py), or
from a `suite_info.json` in the videos folder when there is one (same fields as the suite's
entries). Videos are matched back to prompts by VBench's file naming `{prompt}-{index}.mp4`.

Output folder (default `RUN/scores/<label>-tiny/`), in VBench's formats so that `bench report`
reads official and tiny results alike:
  {dimension}_eval_results.json  {dimension: [aggregate, [{"video_path", "video_results", ...}]]}
  {dimension}_full_info.json     the prompts and videos scored for the dimension
  summary.json                   {dimension: aggregate} for every finished dimension
  bench_scoring.json             {"benchmark": "tiny", videos, dimensions, zoo, times, ...}
Every file is written atomically; a dimension whose result file is complete is skipped on
rerun (`--force` redoes it).

Library functions never print. Heavy imports (torch, OpenCV) are local so that
`bench --help` stays fast.

The package (every name stays importable as `bench.tinyworld.score.X`; a test that replaces a
name replaces it in the module that looks it up):

  suite.py       which prompt serves which dimension, which videos answer it
  decoding.py    the videos' frames, in batches
  formulas.py    VBench's formulas where a formula is not a network
  evaluation.py  the evaluators' passes and the dimensions' scores
  outputs.py     `score_tiny`: a folder scored into VBench's result formats
  cli.py         the `bench score tiny` verb
"""

from __future__ import annotations

# The result-folder protocol both scorers share (bench/scoring/results.py), reachable here as before.
from bench.scoring.results import (  # noqa: F401
    ScoreError, read_complete_result, resolve_videos, result_path, write_result_json,
)

from bench.tinyworld.score.suite import (  # noqa: F401
    BENCHMARK, DECODE_STAGE, FARNEBACK, FLOW_DIMENSIONS, FLOW_MIN_SIDE, FRAME_PROBE_STAGE, PAIR_BOX_HALF,
    PARTIAL_SUFFIX, PIXEL_DIMENSIONS, PRESENCE_THRESHOLD, QUALITY_STAGE, SUITE_INFO_NAME, SuiteSource,
    TinyScoreError, TinyVideo, VIDEO_SUFFIX, _NAME, _index_of, _require_aux, _shorten, _span, load_suite,
    match_videos, tiny_example,
)
from bench.tinyworld.score.decoding import Clip, _Tracker, _clip_tensor, _to_tensor, decode, middle_indices  # noqa: F401
from bench.tinyworld.score.formulas import (  # noqa: F401
    SPATIAL_IOU_THRESHOLD, _gray, _warp, consistency_score, dynamic_degree_details, interpolate_midframe,
    motion_smoothness_score, optical_flow, position_score, temporal_flickering_score,
)
from bench.tinyworld.score.evaluation import (  # noqa: F401
    CLIP_BATCH, CLIP_PROBE_DIMENSIONS, CLIP_PROBE_STAGE, FLOW_STAGE, FRAME_BATCH, FRAME_PROBE_DIMENSIONS,
    PROBE_KEYS, QUALITY_NET_DIMENSIONS, VIDEO_TEXT_DIMENSIONS, VIDEO_TEXT_STAGE, _chunks, _clip_pass,
    _evaluate, _frame_fraction, _frame_pass, aggregate, load_evaluators, resolve_dimensions, tiny_per_video,
)
from bench.tinyworld.score.outputs import (  # noqa: F401
    SCORING_NAME, SUMMARY_NAME, _atomic_write_json, _full_info, _now, _restore, _versions,
    load_tiny_per_video, score_tiny, write_summary, zoo_record,
)
from bench.tinyworld.score.cli import default_out_dir, tiny_command  # noqa: F401
