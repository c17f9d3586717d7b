"""`bench score vbench`: score a videos folder with the official `vbench` package.

VBench runs in its own virtualenv (bench/vbench/env.py) through a small driver script
(bench/vbench/driver.py), one subprocess per dimension. Before anything is installed or
started, every weight file the requested dimensions read is checked
(bench/vbench/weights.py): VBench would otherwise download missing files itself.

Output folder (default `RUN/scores/<label>-vbench/`):
  {dimension}_eval_results.json  VBench's own result file, per-video results included
  {dimension}_full_info.json     VBench's record of which videos it scored
  .bench/                        the harness's own files, in a dot-folder so that the folder
                                 zipped as VBench's README says is a valid submission
                                 (VBench's scripts/cal_final_score.py skips dot entries):
    scoring.json                 per dimension: inputs, versions, device, filter, seconds
    summary.json                 {dimension: aggregate} for every finished dimension
    logs/{dimension}.log         everything VBench printed for that dimension
    static_filter/               VBench's static filter output (filtered_videos/, its json)
A dimension whose result file is complete and whose inputs (videos, vbench and torch
versions, mode, prompt suite, filter state) are unchanged is skipped on rerun (`--force`
redoes it); result files are staged in `.bench/partial/` and moved into place only once
VBench is done. A failing dimension does not stop the others: all failures are reported
together at the end, with a non-zero exit.

The package (every name stays importable as `bench.vbench.score.X`; a test that replaces a
name replaces it in the module that looks it up):

  inputs.py    the output folder's names, dimensions and devices, the videos a dimension needs
  publish.py   a dimension's result published into the folder, the summary, the zip
  running.py   the driver in VBench's environment, one child process per dimension
  flow.py      `score`: stale dimensions, the static filter, the job queue
  cli.py       the `bench score vbench` verb
"""

from __future__ import annotations

# The result-folder protocol both scorers share (bench/scoring/results.py), reachable here as before.
from bench.scoring.results import (  # noqa: F401
    ScoreError, read_complete_result, resolve_videos, result_path, write_result_json,
)

from bench.vbench.score.inputs import (  # noqa: F401
    BENCH_DIR, CUSTOM_DIMENSIONS, CUSTOM_UNSUPPORTED, DEFAULT_TIMEOUT_S, DimensionsFailed, MISSING_EXIT,
    MODES, _entries, custom_prompt_map, default_device, default_out_dir, dimension_files, err_console,
    files_fingerprint, inventory, oversampled_unfiltered, parse_devices, resolve_dimensions, videos_view,
)
from bench.vbench.score.publish import (  # noqa: F401
    SUMMARY_NAME, _atomic_write_json, _installed_full_info, _read_json, _rewrite_paths, _sha256_file,
    export_zip, publish_dimension, write_summary,
)
from bench.vbench.score.running import (  # noqa: F401
    CHILD_TORCH_ENV, DRIVER, DimensionRun, LEGACY_TOP_LEVEL, LOCK_NAME, Scoring, TIMEOUT_EXIT, _ACTIVE,
    _ACTIVE_LOCK, _child_env, _filter_record, _install_env_with_progress, _kill_group, _move_legacy_files,
    _now, _stale_reason, dimension_inputs, output_lock, pinned_versions, run_driver,
)
from bench.vbench.score.flow import (  # noqa: F401
    FILTER_NAME, Job, LOGS_NAME, SCORING_NAME, STAGING_NAME, VIEW_NAME, _run_jobs, _run_static_filter,
    _score_locked, score,
)
from bench.vbench.score.cli import _print_summary, out_console, vbench_command  # noqa: F401
