"""How videos are sampled, as one value: `SamplingSettings` (steps, guidance, origin grid,
spacing, the teacher's protocol; timesteps and NFE derived once).

`bench generate` builds it from its options once it knows the run (a run's distillation grid
sets the student's origin grid, a v2 run its step count), validates it there, and hands it to
`generate_videos`, which records it in generation.json and in every manifest record as it is.
Library callers (`bench ablate`, tests) pass the loose keywords and get the same value made by
`SamplingSettings.make`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from t2v_turbo_core.schedule import LCM_ORIGIN_STEPS, NUM_TRAIN_TIMESTEPS, STUDENT_GUIDANCE_SCALE
from bench.errors import BenchError

SAMPLERS = ("student", "teacher")
DEFAULT_STUDENT_STEPS = 4
DEFAULT_TEACHER_STEPS = 50
DEFAULT_STUDENT_GUIDANCE = STUDENT_GUIDANCE_SCALE  # embedded w (T2V-Turbo's inference default): the core's
DEFAULT_SPACING = {"student": "strided", "teacher": "trailing"}
TEACHER_PROTOCOLS = ("matched", "native")
# matched: this project's 50-step DDIM + CFG baseline on the students' grid (eta 0, trailing
# timesteps, last step onto abar = 1, the teacher's usual CFG scale and fps); native: the
# teacher's own sampler as its authors' script runs it (TextToVideoModel.native_sampler).
DEFAULT_TEACHER_PROTOCOL = "matched"
NATIVE_SPACING = "native"  # the spacing recorded for the native protocol: the teacher's own grid


class GenerateError(BenchError):
    """A user-facing failure (bad input, inconsistent folder); `code` is the exit status."""


def check_origin_steps(origin_steps: int) -> None:
    if not 1 <= origin_steps <= NUM_TRAIN_TIMESTEPS or NUM_TRAIN_TIMESTEPS % origin_steps:
        raise GenerateError(f"--origin-steps {origin_steps}: the LCM origin grid needs a divisor of {NUM_TRAIN_TIMESTEPS} (50 for v1, 200 for v2)")


def default_origin_steps(skip: int | None) -> int:
    """L of a student's origin grid: its distillation grid, N = 1000 // k (50 for v1, 200 for v2)."""
    return NUM_TRAIN_TIMESTEPS // skip if skip and NUM_TRAIN_TIMESTEPS % skip == 0 else LCM_ORIGIN_STEPS


def check_steps(sampler: str, steps: int, origin_steps: int = LCM_ORIGIN_STEPS) -> None:
    if sampler not in SAMPLERS:
        raise GenerateError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    top = origin_steps if sampler == "student" else NUM_TRAIN_TIMESTEPS
    if not 1 <= steps <= top:
        what = f"student steps (the LCM origin grid has {origin_steps} points)" if sampler == "student" else "teacher DDIM steps"
        raise GenerateError(f"--steps {steps}: {what} must be in [1, {top}]")


def check_guidance_scale(value: Any) -> None:
    from bench.validate import number_problem

    problem = number_problem(value, 0)
    if problem:
        raise GenerateError(f"--guidance-scale {value}: {problem}")


def planned_timesteps(sampler: str, steps: int, spacing: str, origin_steps: int = LCM_ORIGIN_STEPS) -> list[int]:
    """The timesteps `sampler` visits in `steps` steps (validates steps, spacing, origin grid)."""
    from t2v_turbo_core.schedule import lcm_timesteps, sampling_timesteps

    if sampler == "student":
        check_origin_steps(origin_steps)
    check_steps(sampler, steps, origin_steps)
    try:
        if sampler == "student":
            return lcm_timesteps(steps, origin_steps, NUM_TRAIN_TIMESTEPS, spacing)
        return sampling_timesteps(steps, NUM_TRAIN_TIMESTEPS, spacing)
    except ValueError as err:
        raise GenerateError(str(err)) from err


def native_plan(bundle: Any, steps: int | None):
    """The teacher's own DDIM plan (`--teacher-protocol native`), or a GenerateError saying why not."""
    from t2v_turbo_core.sampling import native_teacher_plan

    native = getattr(bundle, "native_sampler", None)
    if not native:
        raise GenerateError(
            f"--teacher-protocol native: the {getattr(bundle, 'name', '?')} teacher has no sampler of its own to reproduce "
            "(the tiny teacher was trained here; its baseline is the matched protocol)"
        )
    try:
        return native, native_teacher_plan(native, bundle.schedule, steps)
    except ValueError as err:
        raise GenerateError(f"--teacher-protocol native: {err}") from err


@dataclass(frozen=True)
class SamplingSettings:
    """One generation's sampling, validated when made (`make`).

    guidance_scale is None only for a teacher before its model is known (its own CFG scale);
    steps and timesteps are None only for the native protocol before the teacher's plan is
    known (`for_model` fills them). A student's value is complete when made.
    """

    sampler: str  # student | teacher
    steps: int | None
    spacing: str  # student: strided | linspace; teacher: trailing | leading, or "native"
    guidance_scale: float | None  # student: the embedded w; teacher: the CFG scale
    origin_steps: int | None  # student: L of the LCM origin grid; None for the teacher
    teacher_protocol: str | None  # teacher: matched | native; None for the student
    timesteps: tuple[int, ...] | None  # derived once, from the fields above

    @classmethod
    def make(cls, sampler: str = "student", steps: int | None = None, guidance_scale: float | None = None,
             spacing: str | None = None, origin_steps: int | None = None,
             teacher_protocol: str = DEFAULT_TEACHER_PROTOCOL) -> "SamplingSettings":
        """The settings from generate's options (None: the default), every check that needs no model made."""
        if sampler not in SAMPLERS:
            raise GenerateError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if teacher_protocol not in TEACHER_PROTOCOLS:
            raise GenerateError(f"--teacher-protocol {teacher_protocol!r}: choose one of {', '.join(TEACHER_PROTOCOLS)}")
        if sampler == "student" and teacher_protocol != DEFAULT_TEACHER_PROTOCOL:
            raise GenerateError("--teacher-protocol applies to the teacher baseline (--teacher) only")
        if sampler == "teacher" and origin_steps is not None:
            raise GenerateError("--origin-steps applies to a student's LCM sampler, not the teacher")
        if origin_steps is not None:
            check_origin_steps(origin_steps)
        if guidance_scale is not None:
            check_guidance_scale(guidance_scale)
            guidance_scale = float(guidance_scale)
        if sampler == "teacher" and teacher_protocol == "native":
            if spacing is not None:
                raise GenerateError("--timestep-spacing does not apply to --teacher-protocol native (the teacher's own grid is used)")
            if steps is not None and not 1 <= steps <= NUM_TRAIN_TIMESTEPS:
                raise GenerateError(f"--steps {steps}: teacher DDIM steps must be in [1, {NUM_TRAIN_TIMESTEPS}]")
            return cls(sampler, steps, NATIVE_SPACING, guidance_scale, None, "native", None)
        if sampler == "student":
            origin_steps = origin_steps if origin_steps is not None else LCM_ORIGIN_STEPS
            guidance_scale = guidance_scale if guidance_scale is not None else DEFAULT_STUDENT_GUIDANCE
        steps = steps if steps is not None else (DEFAULT_STUDENT_STEPS if sampler == "student" else DEFAULT_TEACHER_STEPS)
        spacing = spacing or DEFAULT_SPACING[sampler]
        timesteps = tuple(planned_timesteps(sampler, steps, spacing, origin_steps if origin_steps is not None else LCM_ORIGIN_STEPS))
        return cls(sampler, steps, spacing, guidance_scale, origin_steps, teacher_protocol if sampler == "teacher" else None,
                   timesteps)

    def for_model(self, bundle: Any) -> tuple["SamplingSettings", dict | None, Any]:
        """(complete settings, the native sampler's description, its DDIM plan) for `bundle`:
        a teacher's own CFG scale, the native protocol's grid. The two last are None unless native."""
        native = ddim_plan = None
        settings = self
        if self.teacher_protocol == "native":
            native, ddim_plan = native_plan(bundle, self.steps)
            settings = dataclasses.replace(settings, steps=len(ddim_plan.timesteps), timesteps=tuple(int(t) for t in ddim_plan.timesteps))
        if settings.guidance_scale is None:
            scale = float(native["guidance_scale"]) if native is not None else float(bundle.cfg_scale)
            check_guidance_scale(scale)
            settings = dataclasses.replace(settings, guidance_scale=scale)
        return settings, native, ddim_plan

    @property
    def cfg(self) -> bool:
        """The teacher runs classifier-free guidance (two network evaluations a step)."""
        return self.sampler == "teacher" and self.guidance_scale is not None and self.guidance_scale > 1.0

    @property
    def nfe(self) -> int | None:
        return None if self.steps is None else self.steps * (2 if self.cfg else 1)

    def as_record(self) -> dict[str, Any]:
        """The settings as generation.json and each manifest record hold them."""
        return {
            "sampler": self.sampler,
            "steps": self.steps,
            "timesteps": None if self.timesteps is None else list(self.timesteps),
            "timestep_spacing": self.spacing,
            "guidance_scale": self.guidance_scale,
            "cfg": self.cfg,
            "nfe": self.nfe,
            "teacher_protocol": self.teacher_protocol,
            "origin_steps": self.origin_steps,
        }
