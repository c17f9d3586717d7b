"""The ablation spec: which variants, how they sample, where the runs and the report go."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.errors import RUN_FAILED, BenchError
from bench.config import CONFIG_DIR, VARIANTS, VIDEO_RMS, ConfigError
from bench.generate import DEFAULT_STUDENT_GUIDANCE


TEACHER = "teacher"
# Under work_dir: the training steps the variants share while they train (`bench.step_cache`).
SHARED_STEPS_DIR = "shared-steps"


@dataclass
class AblationSpec:
    """An ablation: which variants, how to generate and score, where to write."""

    name: str = "tiny-ablation"
    train_config: str = "tiny"
    train_overrides: list[str] = field(default_factory=list)
    variants: list[dict] = field(default_factory=lambda: [
        {"variant": "vcm"},
        {"variant": "vcm+img"},
        {"variant": "vcm+vid", "rm_vid": "viclip"},
        {"variant": "vcm+img+vid", "rm_vid": "viclip"},
        {"variant": "vcm+img+vid", "rm_vid": "internvid2"},
    ])
    student_steps: int = 4
    guidance_scale: float = DEFAULT_STUDENT_GUIDANCE
    teacher_steps: int = 50
    teacher_cfg: float | None = None  # None: the teacher's usual scale (its own one under native)
    # matched: 50-step DDIM + CFG on the students' grid; native: the teacher's own sampler
    # (bench generate --teacher-protocol; the real teachers only)
    teacher_protocol: str = "matched"
    suite: str = "tiny"
    dimensions: list[str] | None = None  # a subset of the suite (None: all 16 dimensions)
    limit: int | None = None  # only the first N prompts (after `dimensions`): smoke runs
    benchmark: str = "tiny"
    videos_per_prompt: int = 5
    seed: int = 2024
    generate_batch: int = 32
    jobs: int = 2
    threads_per_job: int = 1
    bootstrap: int = 2000
    # Training seeds: each variant is trained once per seed (run dirs `<model>-seed<k>`) and
    # the statistics resample seeds, then prompts. None: one run per variant, with the
    # training config's own seed (run dirs `<model>`).
    train_seeds: list[int] | None = None
    work_dir: str = "runs/ablate-tiny"
    report: str = "reports/tiny-ablation"

    def validate(self) -> None:
        errors = []
        if not isinstance(self.variants, list) or not all(isinstance(v, dict) for v in self.variants):
            raise ConfigError(f"invalid ablation config: variants must be a list of mappings, got {self.variants!r}")
        for v in self.variants:
            if v.get("variant") not in VARIANTS:
                errors.append(f"variant {v.get('variant')!r} (one of {', '.join(VARIANTS)})")
            if "vid" in str(v.get("variant", "")).split("+") and v.get("rm_vid", "viclip") not in VIDEO_RMS:
                errors.append(f"rm_vid {v.get('rm_vid')!r} (one of {', '.join(VIDEO_RMS)})")
        if not any(v.get("variant") == "vcm" for v in self.variants):
            errors.append("the variants must include vcm (differences are reported against it)")
        from bench.validate import number_problem

        numbers = {name: (1, None, True) for name in ("student_steps", "teacher_steps", "videos_per_prompt", "jobs",
                                                       "threads_per_job", "bootstrap", "generate_batch")}
        numbers.update(seed=(0, 2**63 - 1, True), guidance_scale=(0, None, False), teacher_cfg=(0, None, False))
        for name, (lo, hi, integer) in numbers.items():
            value = getattr(self, name)
            if value is None and name == "teacher_cfg":
                continue
            problem = number_problem(value, lo, hi, integer=integer)
            if problem:
                errors.append(f"{name}={value!r} {problem}")
        if self.limit is not None and (not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 1):
            errors.append(f"limit={self.limit!r} must be a whole number >= 1 (or absent: every prompt)")
        if not isinstance(self.train_overrides, list) or not all(isinstance(o, str) for o in self.train_overrides):
            errors.append("train_overrides must be a list of key=value strings")
        elif not errors:
            # Every variant's training config, checked now rather than in a worker minutes later.
            from bench.config import load_config

            for v in self.variants:
                extra = [f"variant={v.get('variant')}"] + ([f"rm_vid={v['rm_vid']}"] if "rm_vid" in v else [])
                try:
                    load_config(self.train_config, list(self.train_overrides) + extra)
                except ConfigError as err:
                    errors.append(f"train_config/train_overrides for {v.get('variant')}: {err}")
                    break
        if self.suite not in ("tiny", "vbench"):
            errors.append(f"suite={self.suite!r} (tiny or vbench)")
        if self.teacher_protocol not in ("matched", "native"):
            errors.append(f"teacher_protocol={self.teacher_protocol!r} (matched or native)")
        elif self.teacher_protocol == "native" and self.train_config == "tiny":
            errors.append("teacher_protocol=native: the tiny teacher has no sampler of its own (use matched)")
        from bench.scoring.registry import BENCHMARKS, names_text

        if self.benchmark not in BENCHMARKS:
            errors.append(f"benchmark={self.benchmark!r} ({names_text()})")
        if self.train_seeds is not None:
            if not self.train_seeds or len(set(self.train_seeds)) != len(self.train_seeds) \
                    or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in self.train_seeds):
                errors.append(f"train_seeds={self.train_seeds!r} must be a non-empty list of distinct integers >= 0")
        names = [model_name(v) for v in self.variants]
        if len(set(names)) != len(names):
            errors.append("two variants have the same variant and rm_vid")
        if errors:
            raise ConfigError("invalid ablation config: " + "; ".join(errors))


def read_spec(path: Path, spec_class: type, overrides: dict | None = None):
    """`spec_class` from a YAML file: unknown keys, bad YAML and a missing file are ConfigErrors
    (exit 2); `overrides` (the CLI's options, None = not given) win over the file."""
    if not path.is_file():
        raise ConfigError(f"ablation config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    known = {f.name for f in dataclasses.fields(spec_class)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}")
    spec = spec_class(**{**raw, **{k: v for k, v in (overrides or {}).items() if v is not None}})
    spec.validate()
    return spec


def load_spec(path: str | Path | None = None, overrides: dict | None = None) -> AblationSpec:
    return read_spec(Path(path) if path else CONFIG_DIR / "ablate_tiny.yaml", AblationSpec, overrides)


def model_name(variant: dict) -> str:
    v = variant["variant"]
    return f"{v}-{variant.get('rm_vid', 'viclip')}" if "vid" in v.split("+") else v



class AblationError(BenchError, RuntimeError):
    """A job of the ablation failed; `code` is the exit status (that of the job's own error)."""

    code = RUN_FAILED
