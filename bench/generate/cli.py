"""The `bench generate` verb: its options, validated before any model loads, then `generate_videos`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from bench.generate.sampling import (
    DEFAULT_STUDENT_GUIDANCE, DEFAULT_STUDENT_STEPS, DEFAULT_TEACHER_PROTOCOL, DEFAULT_TEACHER_STEPS, GenerateError,
    SamplingSettings, default_origin_steps,
)
from t2v_turbo_core.schedule import LCM_ORIGIN_STEPS
from bench.generate.plan import (
    DEFAULT_VIDEOS_PER_PROMPT, SUITES, draw_base_seed, limit_items, load_suite, plan_videos, read_prompt_file,
    shard_plan,
)
from bench.generate.manifest import check_out_dir, read_manifest, recorded_base_seed
from bench.generate.videos import generate_videos


def default_label(suite: str, sampler: str, steps: int, teacher_protocol: str = DEFAULT_TEACHER_PROTOCOL) -> str:
    if sampler == "student":
        return f"{suite}_{steps}step"
    return f"{suite}_teacher{steps}" + ("" if teacher_protocol == DEFAULT_TEACHER_PROTOCOL else f"_{teacher_protocol}")


def _distributed_shard(device: str | None) -> tuple[Any, tuple[int, int]] | None:
    """(accelerate state, (index, count)) when started by a multi-process launcher, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    # On a CPU-only machine `accelerate launch --multi_gpu` starts the processes through
    # torchrun; cpu=True makes accelerate join them with gloo (MULTI_CPU) instead of NCCL.
    cpu = device == "cpu" if device else not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    return state, (state.process_index, state.num_processes)


def generate_command(
    run: Optional[Path] = typer.Option(None, "--run", help="Run directory (runs/<run>/) whose student (or teacher) generates."),
    suite: Optional[str] = typer.Option(None, "--suite", help="Prompt suite: vbench (VBench_full_info.json, 944 prompts) or tiny (61 prompts)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps (default 4 for the student, a v2 run's v2.sample_steps (16), 50 for --teacher)."),
    teacher: bool = typer.Option(False, "--teacher", help="Teacher baseline: DDIM with classifier-free guidance instead of the student."),
    config: Optional[str] = typer.Option(None, "--config", help="With --teacher and no --run: the teacher's config (tiny, ms, vc2 or a YAML path)."),
    guidance_scale: Optional[float] = typer.Option(None, "--guidance-scale", help=f"Student: embedded w (default {DEFAULT_STUDENT_GUIDANCE:g}). Teacher: CFG scale (default: the teacher's own, 7.5 tiny/VC2, 9.0 MS)."),
    timestep_spacing: Optional[str] = typer.Option(None, "--timestep-spacing", help="Student: strided (default; 4 steps = 999,759,519,279) or linspace. Teacher: trailing (default) or leading."),
    teacher_protocol: str = typer.Option(DEFAULT_TEACHER_PROTOCOL, "--teacher-protocol", help="With --teacher: matched (50-step DDIM eta 0 + CFG on the students' grid) or native (the teacher's own sampler: VC2 LVDM DDIM eta 1, CFG 12, x0 rescaling, fps 28; MS its scheduler_config.json DDIM, CFG 9)."),
    origin_steps: Optional[int] = typer.Option(None, "--origin-steps", help=f"Student: L of the LCM origin grid (default: the run's distillation grid, 1000 // skip: {LCM_ORIGIN_STEPS} for v1, 200 for v2)."),
    videos_per_prompt: int = typer.Option(DEFAULT_VIDEOS_PER_PROMPT, "--videos-per-prompt", help="Videos per prompt, named {prompt}-0.mp4 .. (VBench: 5)."),
    dimension: Optional[list[str]] = typer.Option(None, "--dimension", help="Only prompts serving this dimension (repeatable)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N prompts of the suite (after --dimension), for smoke runs."),
    flicker_oversample: bool = typer.Option(False, "--flicker-oversample", help="25 videos per temporal_flickering prompt, for VBench's static filter (run on the `bench score vbench` side)."),
    prompt_file: Optional[Path] = typer.Option(None, "--prompt-file", help="A custom prompt list (one per line) instead of --suite; label 'custom'."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Base seed (default: drawn from os.urandom, or the folder's recorded one on resume; always recorded)."),
    batch_size: int = typer.Option(4, "--batch-size", help="Videos per sampler call."),
    batch_invariant: bool = typer.Option(False, "--batch-invariant", help="Denoise one video per UNet call: bit-identical videos whatever --batch-size, sharding or resume (slower)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default RUN/videos/<suite>_<N>step or RUN/videos/<suite>_teacher<N>)."),
    shard_index: Optional[int] = typer.Option(None, "--shard-index", help="This process's shard (default: accelerate's process index, else 0)."),
    shard_count: Optional[int] = typer.Option(None, "--shard-count", help="Number of shards (default: accelerate's process count, else 1)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: cuda if available; accelerate's device per process)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch intra-op threads (default: torch's choice)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the planned file names (one per line) and exit; loads no model."),
) -> None:
    """Generate videos with VBench's naming for `bench score`: a run's student, or a teacher baseline.

    Examples: `bench generate --run runs/r1 --suite tiny --steps 4`;
    `bench generate --teacher --config tiny --suite tiny` (50-step DDIM + CFG);
    `bench generate --suite vbench --dry-run` (the 4,720 file names);
    `accelerate launch --multi_gpu --num_processes 2 -m bench generate --run runs/r1 --suite tiny`.
    Reruns skip finished videos (file + manifest record) and finish the rest.
    """
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True)

    def fail(message: str, code: int = 2) -> None:
        # bench's one error handler (bench/console.py) prints it and exits with `code`.
        raise GenerateError(message, code)

    try:
        # ---- everything that needs no model: inputs, plan, file names --------------------
        from bench.validate import check_device, number_problem

        sampler = "teacher" if teacher else "student"
        if seed is not None and number_problem(seed, 0, 2**63 - 1, integer=True):
            fail(f"--seed {seed}: {number_problem(seed, 0, 2**63 - 1, integer=True)}")
        if prompt_file is not None:
            if suite is not None:
                fail("give --suite or --prompt-file, not both")
            if dimension:
                fail("--dimension selects from a suite; a --prompt-file has no dimensions")
            items, source, suite_name = read_prompt_file(prompt_file), {"suite": "custom", "path": str(prompt_file)}, "custom"
        else:
            if suite is None:
                fail(f"choose a prompt suite with --suite ({' or '.join(SUITES)}) or give --prompt-file")
            if suite not in SUITES:
                fail(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
            items, source = load_suite(suite, dimension)
            suite_name = suite
        if limit is not None:
            items, source = limit_items(items, limit), {**source, "limit": limit}
        plan = plan_videos(items, videos_per_prompt, flicker_oversample)
        explicit_shard = shard_index is not None or shard_count is not None
        if explicit_shard:
            shard = (shard_index or 0, shard_count or 1)
            shard_plan(plan, shard)  # validates
        if dry_run:
            shown = shard_plan(plan, shard) if explicit_shard else plan
            sys.stdout.write("".join(v.file + "\n" for v in shown))
            return
        # The sampling settings, made (and validated) once: the teacher's here, a student's
        # once its run is read (the run's grid is its origin grid; a v2 run sets its steps).
        sampling = None
        if teacher:
            sampling = SamplingSettings.make(sampler, steps if steps is not None else DEFAULT_TEACHER_STEPS, guidance_scale,
                                             timestep_spacing, origin_steps, teacher_protocol)
        elif teacher_protocol != DEFAULT_TEACHER_PROTOCOL:
            fail("--teacher-protocol applies to the teacher baseline (--teacher) only")
        if batch_size < 1:
            fail(f"--batch-size must be >= 1, got {batch_size}")
        if threads is not None and threads < 1:
            fail(f"--threads must be >= 1, got {threads}")

        from bench.runs import RunError, read_run, student_adapter_path

        if run is not None:
            if not run.is_dir():
                fail(f"run directory not found: {run}")
            try:
                read_run(run)
            except RunError as err:
                fail(str(err))
            if config is not None:
                fail("give --run or --config, not both (a run names its own teacher)")
            if not teacher and not student_adapter_path(run).is_file():
                fail(f"{run}: no final student at {student_adapter_path(run)} (is training finished? `bench train --resume`)")
            if not teacher:
                from bench.runs import run_config
                from bench.v2 import default_sample_steps

                run_cfg = run_config(run)
                sampling = SamplingSettings.make(
                    sampler, steps if steps is not None else default_sample_steps(run_cfg, DEFAULT_STUDENT_STEPS),  # a v2 student: 16
                    guidance_scale, timestep_spacing,
                    origin_steps if origin_steps is not None else default_origin_steps(run_cfg.skip))
            model_label = str(run.resolve()) if not teacher else f"{run.resolve()} (teacher)"
            out_dir = out or run / "videos" / default_label(suite_name, sampler, sampling.steps, teacher_protocol)
        else:
            if not teacher:
                fail("--run RUN is required to generate with a student (or use --teacher --config NAME)")
            config = config or "tiny"
            model_label = f"teacher:{config}"
            out_dir = out or Path("runs") / f"teacher-{Path(config).stem}" / "videos" / default_label(suite_name, sampler, sampling.steps, teacher_protocol)
        check_out_dir(out_dir)
        try:
            check_device(device)
        except ValueError as err:
            fail(str(err))

        # ---- processes, device, models ---------------------------------------------------
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        dist = None
        if not explicit_shard:
            dist = _distributed_shard(device)
            shard = dist[1] if dist else (0, 1)
        if device is None:
            device = str(dist[0].device) if dist else ("cuda" if torch.cuda.is_available() else "cpu")

        if dist is not None:
            from accelerate.utils import broadcast_object_list

            # One base seed for all processes, decided by the main process (given, recorded on a
            # resume, or drawn) before any process writes, and sent to the others.
            chosen = None
            if dist[0].is_main_process:
                chosen = seed if seed is not None else recorded_base_seed(out_dir)
                chosen = chosen if chosen is not None else draw_base_seed()
            seed = broadcast_object_list([chosen])[0]
        elif seed is None:
            seed = recorded_base_seed(out_dir)
            if seed is None and shard[1] > 1:
                fail("--shard-count > 1 without accelerate needs --seed (every shard must use the same base seed)")

        try:
            if teacher:
                from bench.config import ConfigError, load_config
                from bench.runs import load_teacher, run_config

                try:
                    cfg = run_config(run) if run is not None else load_config(config)
                except ConfigError as err:
                    fail(str(err))
                bundle = load_teacher(cfg, device=device)
                unet = bundle.unet
            else:
                from bench.runs import load_run_student

                from bench.v2 import generation_record, sampling_student

                bundle, unet, run_cfg = load_run_student(run, device=device)
                unet, v2_record = sampling_student(run_cfg, unet), generation_record(run_cfg, sampling.steps, sampling.origin_steps, sampling.spacing)
        except (RunError, FileNotFoundError, ValueError) as err:
            fail(f"cannot load the model: {err}")
        except ImportError as err:
            fail(f"cannot load the model (missing component: {err})")

        # ---- generate ------------------------------------------------------------------
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        desc = f"{out_dir.name}" + (f" shard {shard[0]}/{shard[1]}" if shard[1] > 1 else "")
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=console, transient=False,
        ) as bar:
            task = bar.add_task(escape(desc), total=None)

            def on_progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            summary = generate_videos(
                bundle, unet, items, out_dir, sampling=sampling,
                videos_per_prompt=videos_per_prompt, seed=seed, batch_size=batch_size, shard=shard,
                progress=on_progress, model_label=model_label,
                flicker_oversample=flicker_oversample, suite_source=source, batch_invariant=batch_invariant,
                record={"suite": suite_name, "run": str(run) if run else None, "dimensions": dimension or None, "limit": limit,
                        **(v2_record if not teacher else {})},
            )
        console.print(
            f"[green]{escape(str(out_dir))}[/]: {summary.generated} generated"
            + (f" ({summary.damaged} found damaged and made again)" if summary.damaged else "")
            + f", {summary.skipped} already done "
            f"({summary.planned} in this shard), base seed {summary.base_seed}, {summary.settings['nfe']} NFE per video"
        )
        if dist is not None:
            dist[0].wait_for_everyone()
            if dist[0].is_main_process:
                have = read_manifest(out_dir)
                missing = [v.file for v in plan if v.file not in have or not (out_dir / v.file).is_file()]
                console.print(f"all shards: {len(plan) - len(missing)}/{len(plan)} videos complete")
    finally:
        _end_distributed()


def _end_distributed() -> None:
    # Tear the gloo/NCCL group down explicitly: torch warns about (and may hang on) a group
    # left to the interpreter's exit.
    if "torch.distributed" not in sys.modules:  # e.g. --dry-run: never import torch for this
        return
    try:
        import torch.distributed as td

        if td.is_available() and td.is_initialized():
            td.destroy_process_group()
    except Exception:  # noqa: BLE001 - shutdown must never mask the command's own result
        pass


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_command)
