"""One model's job, run in a worker process: train a student (or load the teacher), generate,
score. Each stage skips what is already complete, so an interrupted job resumes."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from bench.ablate.spec import AblationSpec, SHARED_STEPS_DIR, TEACHER


def _labels(spec: AblationSpec, teacher: bool) -> tuple[str, str]:
    from bench.generate import default_label

    steps = spec.teacher_steps if teacher else spec.student_steps
    label = default_label(spec.suite, "teacher" if teacher else "student", steps, spec.teacher_protocol)
    return label, f"{label}-{spec.benchmark}"


def _suite_items(spec: AblationSpec):
    from bench.generate import limit_items, load_suite

    items, source = load_suite(spec.suite, spec.dimensions)
    if spec.limit is not None:
        items, source = limit_items(items, spec.limit), {**source, "limit": spec.limit}
    return items, source


def _score(spec: AblationSpec, videos: Path, scores: Path, report, zoo: str | None = None) -> dict:
    if spec.benchmark == "tiny":
        from bench.tinyworld.score import score_tiny

        return score_tiny(videos, scores, dimensions=spec.dimensions, zoo=zoo,
                          progress=lambda done, total: report("score", done, total))
    from bench.vbench.score import resolve_dimensions, score

    return score(videos, videos.name, scores, resolve_dimensions(spec.dimensions), None, force=False, command_line="bench ablate")


def generation_device(cfg) -> str:
    """A real teacher generates on the GPU when there is one (its 50-step baseline on the CPU
    would take days); the tiny world on the CPU, where its reference results were made."""
    import torch

    return "cuda" if cfg.teacher != "tiny" and torch.cuda.is_available() else "cpu"


def run_job(spec_dict: dict, entry: dict, queue: Any = None) -> dict:
    """Train (students), generate and score one model. Skips whatever is complete."""
    import torch

    spec = AblationSpec(**spec_dict)
    torch.set_num_threads(spec.threads_per_job)
    name = entry["name"]
    run_dir = Path(spec.work_dir) / name
    teacher = name == TEACHER
    timings: dict[str, float] = {}

    def report(stage: str, done: int, total: int) -> None:
        if queue is not None:
            queue.put((name, stage, done, total))

    from bench.config import config_to_dict, load_config
    from bench.generate import default_origin_steps, generate_videos
    from bench.runs import load_run_student, load_teacher, read_run, run_record, write_json_atomic

    t0 = time.time()
    if teacher:
        cfg = load_config(spec.train_config, list(spec.train_overrides))
        if not (run_dir / "run.json").is_file():
            write_json_atomic(run_dir / "run.json", run_record("teacher", config_to_dict(cfg), {"generation_seed": spec.seed},
                                                               {"status": "finished"}))
        bundle = load_teacher(cfg, device=generation_device(cfg))
        unet = bundle.unet
    else:
        overrides = list(spec.train_overrides) + [f"variant={entry['variant']}"]
        if "rm_vid" in entry:
            overrides.append(f"rm_vid={entry['rm_vid']}")
        if entry.get("train_seed") is not None:
            overrides.append(f"seed={entry['train_seed']}")
        cfg = load_config(spec.train_config, overrides)
        status = read_run(run_dir).get("status") if (run_dir / "run.json").is_file() else None
        if status != "finished":
            from bench.train import TENSORBOARD_DIR, train

            # One TensorBoard log directory for the whole ablation (WORK_DIR/tensorboard/<model>/):
            # `tensorboard --logdir WORK_DIR/tensorboard` overlays every variant's curves.
            # The variants' jobs share each step's batch and teacher pass (`bench.step_cache`):
            # the first to reach a step computes it, the others read it; bit for bit the same.
            train(cfg, run_dir, resume=status is not None, device="cpu" if not torch.cuda.is_available() else None,
                  on_step=lambda step, logs: report("train", step, cfg.steps),
                  tracker_dir=Path(spec.work_dir) / TENSORBOARD_DIR, shared_steps=Path(spec.work_dir) / SHARED_STEPS_DIR)
        timings["train_seconds"] = float(read_run(run_dir).get("train_seconds", time.time() - t0))
        bundle, unet, _ = load_run_student(run_dir, device=generation_device(cfg))
    label, score_label = _labels(spec, teacher)
    videos = run_dir / "videos" / label
    items, source = _suite_items(spec)
    t1 = time.time()
    summary = generate_videos(
        bundle, unet, items, videos,
        sampler="teacher" if teacher else "student",
        steps=spec.teacher_steps if teacher else spec.student_steps,
        guidance_scale=spec.teacher_cfg if teacher else spec.guidance_scale,
        videos_per_prompt=spec.videos_per_prompt, seed=spec.seed, batch_size=spec.generate_batch,
        progress=lambda done, total: report("generate", done, total), model_label=str(run_dir), suite_source=source,
        record={"suite": spec.suite, "ablation": spec.name},
        teacher_protocol=spec.teacher_protocol if teacher else "matched",
        origin_steps=None if teacher else default_origin_steps(cfg.skip),
    )
    timings["generate_seconds"] = round(time.time() - t1, 1)
    t2 = time.time()
    _score(spec, videos, run_dir / "scores" / score_label, report, zoo=cfg.weights.get("tiny_zoo"))
    timings["score_seconds"] = round(time.time() - t2, 1)
    # Seconds spent on each stage over every pass: a resumed ablation adds the time of the
    # work it redid instead of replacing the first pass's figures with its own (near zero).
    job_path = run_dir / "ablation_job.json"
    spent = json.loads(job_path.read_text()).get("timings", {}) if job_path.is_file() else {}
    for key in ("generate_seconds", "score_seconds"):
        timings[key] = round(timings[key] + float(spent.get(key, 0.0)), 1)
    write_json_atomic(job_path, {"timings": timings})
    return {"name": name, "run_dir": str(run_dir), "videos": str(videos), "scores": str(run_dir / "scores" / score_label),
            "timings": timings, "generated": dataclasses.asdict(summary) if dataclasses.is_dataclass(summary) else str(summary)}
