"""Scoring a folder: which dimensions are stale, VBench's static filter, the job queue over the devices, the summary."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

from rich.markup import escape

from bench.scoring import results
from bench.scoring.results import ScoreError, read_complete_result, result_path
from bench.vbench import env as vbench_env
from bench.vbench import weights as vbench_weights
from bench.vbench import suite
from bench.vbench.score.inputs import (
    BENCH_DIR, DEFAULT_TIMEOUT_S, DimensionsFailed, MISSING_EXIT, custom_prompt_map, dimension_files, err_console,
    files_fingerprint, inventory, oversampled_unfiltered, parse_devices, videos_view,
)
from bench.vbench.score.publish import (
    _atomic_write_json, _installed_full_info, _read_json, _sha256_file, publish_dimension, write_summary,
)
from bench.vbench.score.running import (
    Scoring, _ACTIVE, _ACTIVE_LOCK, _filter_record, _install_env_with_progress, _kill_group, _move_legacy_files, _now,
    _stale_reason, dimension_inputs, output_lock, run_driver,
)


SCORING_NAME = "scoring.json"
LOGS_NAME = "logs"
STAGING_NAME = "partial"
VIEW_NAME = "videos-view"
FILTER_NAME = "static_filter"


@dataclass
class Job:
    """One VBench evaluate call to make."""

    dimension: str
    videos_path: Path  # what VBench reads (maybe a links folder)
    real_videos: Path  # what the result files should name
    view: Path | None
    inputs: dict
    extra: dict = field(default_factory=dict)  # recorded as-is (static filter details)
    prompt_file: Path | None = None


def score(videos_dir: Path, label: str, out_dir: Path, dimensions: list[str], device: str | None,
          force: bool, command_line: str, *, static_filter: bool | None = None, mode: str = "vbench_standard",
          full_info: Path | None = None, timeout_s: float | None = DEFAULT_TIMEOUT_S,
          devices: str | None = None, verify_hashes: bool = True) -> dict[str, float]:
    """The whole `bench score vbench` flow; raises ScoreError on a user-facing failure."""
    workers = parse_devices(device, devices)
    if full_info is not None and not full_info.is_file():
        raise ScoreError(f"--full-info {full_info}: no such file")
    failures: dict[str, tuple[int, str]] = {}

    rule = suite.TEMPORAL_FLICKERING_OVERSAMPLING
    oversampled = mode == "vbench_standard" and oversampled_unfiltered(videos_dir)
    want_filter = (
        rule.dimension in dimensions and mode == "vbench_standard"
        and (static_filter if static_filter is not None else oversampled)
    )

    missing = vbench_weights.missing_weights(dimensions, verify_hashes)
    if want_filter:
        raft = vbench_weights.static_filter_requirements()
        lacking = [r for r in raft if not r.present(verify_hashes)]
        if lacking:
            missing.setdefault(rule.dimension, []).extend(lacking)
    if missing and set(missing) >= set(dimensions):
        raise ScoreError(vbench_weights.format_missing(missing, verify_hashes), code=MISSING_EXIT)
    if missing:
        err_console.print(f"[yellow]warning[/]: {escape(vbench_weights.format_missing(missing, verify_hashes))}\n"
                          "The other dimensions are scored; these are reported again at the end.", soft_wrap=True)
        for d in missing:
            failures[d] = (MISSING_EXIT, vbench_weights.format_missing({d: missing[d]}, verify_hashes))

    counts = inventory(videos_dir, dimensions, mode, full_info)
    empty = [d for d, c in counts.items() if c["found"] == 0]
    if empty and set(empty) | set(failures) >= set(dimensions):
        if mode == "custom_input":
            raise ScoreError(f"no .mp4 videos in {videos_dir}")
        examples = "\n".join(f"  {d}: e.g. {counts[d]['missing_examples'][0]!r}" for d in empty)
        raise ScoreError(
            f"no videos in {videos_dir} for {', '.join(empty)}; VBench expects "
            f"{{prompt}}-{{index}}.mp4 for its own prompts:\n{examples}"
        )
    for d in empty:
        failures.setdefault(d, (2, f"no videos in {videos_dir} for {d}"))
    for d, c in counts.items():
        if 0 < c["found"] < c["expected"]:
            err_console.print(
                f"[yellow]warning[/]: {d}: {c['found']}/{c['expected']} videos present "
                f"(e.g. missing {escape(repr(c['missing_examples'][0]))}); VBench scores what is there",
                soft_wrap=True,
            )

    out_dir.mkdir(parents=True, exist_ok=True)
    with output_lock(out_dir):
        return _score_locked(
            videos_dir=videos_dir, label=label, out_dir=out_dir, dimensions=dimensions, workers=workers,
            force=force, command_line=command_line, want_filter=want_filter, oversampled=oversampled,
            mode=mode, full_info=full_info, timeout_s=timeout_s, failures=failures, counts=counts,
            explicit_filter=static_filter, verify_hashes=verify_hashes,
        )


def _score_locked(*, videos_dir: Path, label: str, out_dir: Path, dimensions: list[str], workers: list[str],
                  force: bool, command_line: str, want_filter: bool, oversampled: bool, mode: str,
                  full_info: Path | None, timeout_s: float | None, failures: dict[str, tuple[int, str]],
                  counts: dict, explicit_filter: bool | None, verify_hashes: bool) -> dict[str, float]:
    rule = suite.TEMPORAL_FLICKERING_OVERSAMPLING
    bench_dir = out_dir / BENCH_DIR
    logs = bench_dir / LOGS_NAME
    staging_root = bench_dir / STAGING_NAME
    _move_legacy_files(out_dir)

    scoring = Scoring(bench_dir / SCORING_NAME)
    scoring.data = _read_json(scoring.path) or {}
    if not isinstance(scoring.data.get("dimensions"), dict):
        scoring.data["dimensions"] = {}
    records: dict = scoring.data["dimensions"]

    # The prompt suite VBench will read; before the env exists, the shipped copy has the same bytes.
    full_info_file = full_info or suite.full_info_path()
    full_info_sha = _sha256_file(full_info_file)
    candidates = [d for d in dimensions if d not in failures]

    # Which dimensions need VBench, and why.
    todo: list[str] = []
    done: dict[str, float] = {}
    planned_inputs: dict[str, dict] = {}
    for d in candidates:
        filtered = want_filter and d == rule.dimension
        files = dimension_files(videos_dir, d, mode, full_info)
        if filtered:  # the filter's input: every sample of every temporal_flickering prompt
            present = {p.name for p in videos_dir.iterdir()}
            files = sorted(n for e in suite.load_vbench_suite([d])
                           for n in suite.oversampled_video_filenames(e.prompt) if n in present)
        inputs = dimension_inputs(videos_dir=videos_dir, files=files, mode=mode,
                                  full_info_sha256=full_info_sha, static_filter=filtered)
        planned_inputs[d] = inputs
        value = read_complete_result(result_path(out_dir, d), d)
        if value is not None and not force:
            reason = _stale_reason(records.get(d), inputs)
            if reason is None:
                done[d] = value
                err_console.print(f"[dim]{d}: already scored ({value:.4f}), skipped[/]", soft_wrap=True)
                continue
            err_console.print(f"[yellow]{d}[/]: rescoring, {escape(reason)}", soft_wrap=True)
        todo.append(d)

    if rule.dimension in dimensions and not want_filter and rule.dimension not in failures:
        why = (
            f"{videos_dir} has temporal_flickering videos numbered past {rule.n_kept - 1} but --no-static-filter "
            f"was given: VBench scores only -0..-{rule.n_kept - 1}, moving or not"
            if oversampled else
            f"the videos were not oversampled ({rule.n_sampled} per prompt; `bench generate --flicker-oversample`) "
            "and filtered"
            if mode == "vbench_standard" else "custom_input mode has no static filter"
        )
        err_console.print(
            f"[bold yellow]warning[/]: temporal_flickering is scored WITHOUT VBench's static filter ({why}). "
            "The official protocol scores only static videos (`--static-filter`); this value is not comparable "
            "with the leaderboard's.", soft_wrap=True,
        )

    env = _install_env_with_progress() if todo else vbench_env.current_env()
    if todo and any(d in vbench_weights.NEEDS_DETECTRON2 for d in todo):
        try:
            vbench_env.ensure_detectron2(env, lambda line: err_console.print(escape(line), soft_wrap=True))
        except vbench_env.VBenchEnvError as err:
            for d in [d for d in todo if d in vbench_weights.NEEDS_DETECTRON2]:
                failures[d] = (MISSING_EXIT, str(err))
                todo.remove(d)
    versions = env.versions()
    installed_info = _installed_full_info(env)
    driver_full_info = full_info or installed_info
    if todo and full_info is None and installed_info is not None and _sha256_file(installed_info) != full_info_sha:
        raise ScoreError(f"the VBench env's {installed_info} differs from {full_info_file}; rebuild the env", code=1)

    scoring.data.update(
        benchmark="vbench",
        label=label,
        mode_last_run=mode,
        vbench_env=str(env.root),
        vbench_cache_dir=str(vbench_weights.vbench_cache_dir()),
        versions=versions,
        detectron2=vbench_env.detectron2_record(env),
        command=command_line,
        started=_now(),
        finished=None,
        status="running",
        requested=dimensions,
        weight_hashes_checked=verify_hashes,
    )
    scoring.save()

    view = videos_view(videos_dir, bench_dir / VIEW_NAME) if todo else None
    jobs: list[Job] = []
    for d in todo:
        job = Job(d, view or videos_dir, videos_dir, view, planned_inputs[d])
        if mode == "custom_input":
            prompts = custom_prompt_map(videos_dir)
            if prompts:
                bench_dir.mkdir(parents=True, exist_ok=True)
                job.prompt_file = bench_dir / "custom_prompts.json"
                _atomic_write_json(job.prompt_file, prompts)
        if d == rule.dimension and mode != "vbench_standard":
            job.extra = {"static_filter": {"ran": False, "reason": "custom_input mode has no static filter"}}
        elif d == rule.dimension:
            if want_filter:
                try:
                    filt = _run_static_filter(env, videos_dir, bench_dir, workers[0], timeout_s, logs, staging_root)
                except ScoreError as err:
                    failures[d] = (err.code, str(err))
                    continue
                fdir = bench_dir / FILTER_NAME / rule.filtered_subdir
                job.videos_path = job.real_videos = fdir
                job.view = None
                job.extra = {"static_filter": filt}
                if filt["prompts_with_fewer_than_5_kept"]:
                    err_console.print(
                        f"[yellow]warning[/]: the static filter kept fewer than {rule.n_kept} videos for "
                        f"{len(filt['prompts_with_fewer_than_5_kept'])} prompt(s) (VBench warns the same)",
                        soft_wrap=True)
            else:
                job.extra = {"static_filter": {
                    "ran": False,
                    "reason": "--no-static-filter" if explicit_filter is False else "videos not oversampled",
                }}
        jobs.append(job)

    results = dict(done)
    _run_jobs(jobs, env=env, workers=workers, out_dir=out_dir, staging_root=staging_root, logs=logs,
              timeout_s=timeout_s, mode=mode, driver_full_info=driver_full_info, versions=versions,
              scoring=scoring, results=results, failures=failures)

    if staging_root.exists() and not any(staging_root.iterdir()):
        staging_root.rmdir()
    if view is not None:
        shutil.rmtree(view, ignore_errors=True)
    summary = write_summary(out_dir)
    finished = {d: summary[d] for d in dimensions if d in summary and d not in failures}
    scoring.data.update(finished=_now(), status="complete" if not failures else "failed: " + ", ".join(
        d for d in dimensions if d in failures))
    scoring.save()
    if failures:
        ordered = [d for d in dimensions if d in failures]
        lines = [f"{len(ordered)} of {len(dimensions)} dimension(s) failed: {', '.join(ordered)}"]
        for d in ordered:
            lines.append(f"--- {d}:\n{failures[d][1]}")
        code = MISSING_EXIT if all(failures[d][0] == MISSING_EXIT for d in ordered) else 1
        raise DimensionsFailed("\n".join(lines), code, finished)
    return finished


def _run_static_filter(env: vbench_env.VBenchEnv, videos_dir: Path, bench_dir: Path, device: str,
                       timeout_s: float | None, logs: Path, staging_root: Path) -> dict:
    """VBench's static filter on the 25 samples per prompt -> .bench/static_filter/ (reused while
    the videos are unchanged)."""
    rule = suite.TEMPORAL_FLICKERING_OVERSAMPLING
    target = bench_dir / FILTER_NAME
    present = {p.name for p in videos_dir.iterdir()}
    files = sorted(n for e in suite.load_vbench_suite([rule.dimension])
                   for n in suite.oversampled_video_filenames(e.prompt) if n in present)
    fingerprint = files_fingerprint(videos_dir, files)
    stamp = target / ".bench-filter.json"
    old = _read_json(stamp)
    if isinstance(old, dict) and old.get("files_sha256") == fingerprint and (target / rule.filtered_subdir).is_dir():
        err_console.print("[dim]static filter: reusing its earlier output (same videos)[/]")
        return {**_filter_record(target, videos_dir), **{k: old[k] for k in ("device", "seconds", "files_sha256")}}
    if not device.isdigit() and not device.startswith("cuda"):
        err_console.print(
            "[bold yellow]note[/]: VBench's static_filter hard-codes CUDA (vbench/cli/static_filter.py: "
            f"DEVICE = 'cuda'); on this {device} machine the harness runs the same code with its device "
            "set to cpu. Slow for 1,875 videos; on a GPU machine it runs as VBench wrote it.", soft_wrap=True)
    staging = staging_root / FILTER_NAME
    with err_console.status("VBench static_filter ..."):
        run = run_driver(env, args=["--action", "static_filter", "--videos-dir", str(videos_dir)],
                         label="static_filter", staging=staging, device=device,
                         log_path=logs / "static_filter.log", timeout_s=timeout_s)
    log = logs / "static_filter.log"
    if run.timed_out:
        raise ScoreError(f"VBench's static filter timed out after {timeout_s:.0f}s (--timeout); log: {log}", code=1)
    if run.rc == MISSING_EXIT and run.missing_line:
        raise ScoreError(f"static filter: {run.missing_line}\nlog: {log}", code=MISSING_EXIT)
    if run.rc != 0:
        raise ScoreError(f"VBench's static filter failed (exit {run.rc}). Last lines of {log}:\n"
                         f"{vbench_env.tail(log, 25)}", code=1)
    record = _filter_record(staging, videos_dir)
    if not (staging / rule.filtered_subdir).is_dir():
        (staging / rule.filtered_subdir).mkdir()
    _atomic_write_json(staging / ".bench-filter.json",
                       {"files_sha256": fingerprint, "device": device, "seconds": round(run.seconds, 1)})
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    err_console.print(f"[green]✓[/] static filter kept {record['videos_kept']} videos "
                      f"({len(record['kept_per_prompt'])} prompts, {run.seconds:.0f}s)")
    return {**record, "device": device, "seconds": round(run.seconds, 1), "files_sha256": fingerprint}


def _run_jobs(jobs: list[Job], *, env, workers: list[str], out_dir: Path, staging_root: Path, logs: Path,
              timeout_s: float | None, mode: str, driver_full_info: Path | None, versions: dict,
              scoring: Scoring, results: dict, failures: dict) -> None:
    """Each worker (one per device) takes the next job until none is left."""
    pending: "queue.Queue[Job]" = queue.Queue()
    for j in jobs:
        pending.put(j)
    print_lock = threading.Lock()
    total = len(jobs)
    counter = iter(range(1, total + 1))

    def run_one(job: Job, device: str) -> None:
        d = job.dimension
        with print_lock:
            i = next(counter)
            err_console.print(f"VBench {d} ({i}/{total}) on {device} ...", soft_wrap=True)
        args = ["--videos-dir", str(job.videos_path), "--dimension", d, "--name", d, "--mode", mode]
        if driver_full_info is not None:
            args += ["--full-info", str(driver_full_info)]
        if job.prompt_file is not None:
            args += ["--prompt-file", str(job.prompt_file)]
        log = logs / f"{d}.log"
        record = {"status": "running", "inputs": job.inputs, "device": device, "started": _now(),
                  "log": str(log), "scored_videos_dir": str(job.real_videos), **job.extra}
        scoring.set_dimension(d, record)
        run = run_driver(env, args=args, label=d, staging=staging_root / d, device=device,
                         log_path=log, timeout_s=timeout_s)
        try:
            if run.timed_out:
                raise ScoreError(f"VBench {d} timed out after {timeout_s:.0f}s (--timeout); log: {log}", code=1)
            if run.rc == MISSING_EXIT and run.missing_line:
                raise ScoreError(f"{d}: {run.missing_line}\nlog: {log}", code=MISSING_EXIT)
            if run.rc < 0:
                why = " (SIGKILL: often the out-of-memory killer)" if run.rc == -signal.SIGKILL else ""
                raise ScoreError(f"VBench was killed by signal {-run.rc} on {d}{why}; log: {log}", code=1)
            if run.rc != 0:
                raise ScoreError(
                    f"VBench failed on {d} (exit {run.rc}). Last lines of {log}:\n{vbench_env.tail(log, 25)}",
                    code=1,
                )
            value = publish_dimension(staging_root / d, out_dir, d, job.view, job.real_videos)
        except ScoreError as err:
            failures[d] = (err.code, str(err))
            scoring.set_dimension(d, {**record, "status": "failed", "error": str(err).splitlines()[0],
                                      "seconds": round(run.seconds, 1), "finished": _now()})
            with print_lock:
                err_console.print(f"[red]✗[/] {d} failed ({run.seconds:.0f}s); continuing", soft_wrap=True)
            return
        results[d] = value
        scoring.set_dimension(d, {**record, "status": "complete", "seconds": round(run.seconds, 1),
                                  "finished": _now(), "aggregate": value,
                                  "vbench_version": versions.get("vbench"), "torch": versions.get("torch")})
        with print_lock:
            write_summary(out_dir)
            err_console.print(f"[green]✓[/] {d} = {value:.4f}  ({run.seconds:.0f}s on {device})")

    errors: list[BaseException] = []

    def worker(device: str) -> None:
        while True:
            try:
                job = pending.get_nowait()
            except queue.Empty:
                return
            try:
                run_one(job, device)
            except BaseException as err:  # noqa: BLE001  re-raised in the main thread
                errors.append(err)
                return

    if len(workers) == 1:
        worker(workers[0])
    else:
        threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in workers]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.5)
        except BaseException:
            # Ctrl-C reaches only this thread; the workers' VBench processes have sessions of their own.
            while not pending.empty():
                pending.get_nowait()
            with _ACTIVE_LOCK:
                running = list(_ACTIVE)
            for proc in running:
                _kill_group(proc)
            raise
    if errors:
        raise errors[0]


