"""bench/generate/sampling.py: the sampling settings as one value, validated and derived once."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest

from bench import generate as G
from bench.generate import sampling as S
from bench.generate.sampling import GenerateError, SamplingSettings
from t2v_turbo_core import sampling as core_sampling
from t2v_turbo_core import schedule as core_schedule

from .test_generate import cli  # noqa: F401
from .test_generate import run_dir, zoo  # noqa: F401 (fixtures)


def test_a_student_is_complete_when_made():
    s = SamplingSettings.make("student")
    assert (s.steps, s.spacing, s.origin_steps, s.teacher_protocol) == (4, "strided", 50, None)
    assert s.timesteps == (999, 759, 519, 279) and s.nfe == 4 and not s.cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.steps = 8
    # One home for the student's defaults: the core's, which its sampler defaults to as well.
    assert s.guidance_scale == core_schedule.STUDENT_GUIDANCE_SCALE == G.DEFAULT_STUDENT_GUIDANCE == 7.5
    assert s.origin_steps == core_schedule.LCM_ORIGIN_STEPS == G.LCM_ORIGIN_STEPS
    import inspect

    params = inspect.signature(core_sampling.consistency_sample).parameters
    assert (params["guidance_scale"].default, params["origin_steps"].default) == (7.5, 50)
    assert SamplingSettings.make("student", 16, origin_steps=200).timesteps[:2] == (999, 939)


def test_a_teacher_takes_its_models_cfg_scale():
    s = SamplingSettings.make("teacher")
    assert s.guidance_scale is None and s.steps == 50 and s.spacing == "trailing" and s.origin_steps is None
    full, native, plan = s.for_model(SimpleNamespace(cfg_scale=9.0, name="ms"))
    assert full.guidance_scale == 9.0 and full.cfg and full.nfe == 100 and native is None and plan is None
    assert full.as_record() == {"sampler": "teacher", "steps": 50, "timesteps": list(s.timesteps), "timestep_spacing": "trailing",
                                "guidance_scale": 9.0, "cfg": True, "nfe": 100, "teacher_protocol": "matched", "origin_steps": None}
    assert SamplingSettings.make("teacher", guidance_scale=1.0).for_model(None)[0].nfe == 50  # no CFG: one pass a step


@pytest.mark.parametrize("kwargs, message", [
    (dict(sampler="student", steps=51), "--steps 51: student steps"),
    (dict(sampler="student", steps=4, origin_steps=7), "divisor of 1000"),
    (dict(sampler="teacher", origin_steps=200), "--origin-steps applies"),
    (dict(sampler="student", teacher_protocol="native"), "applies to the teacher baseline"),
    (dict(sampler="teacher", teacher_protocol="native", spacing="leading"), "does not apply"),
    (dict(sampler="teacher", teacher_protocol="native", steps=1001), "--steps 1001"),
    (dict(sampler="teacher", steps=1001), "teacher DDIM steps"),
    (dict(sampler="student", guidance_scale=float("nan")), "--guidance-scale nan"),
    (dict(sampler="student", spacing="leading"), "spacing"),
    (dict(sampler="painter"), "unknown sampler"),
])  # fmt: skip
def test_bad_settings_are_refused_when_made(kwargs, message):
    with pytest.raises(GenerateError, match=message):
        SamplingSettings.make(**kwargs)


def test_the_cli_validates_and_derives_the_timesteps_once(run_dir, tmp_path, monkeypatch):  # noqa: F811
    calls = []
    real = S.planned_timesteps

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(S, "planned_timesteps", counted)
    out = tmp_path / "v"
    res = cli(["--run", str(run_dir), "--suite", "tiny", "--limit", "1", "--videos-per-prompt", "1", "--steps", "2",
               "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert calls == [("student", 2, "strided", 50)]  # before: three times on the way to the sampler
    gen = json.loads((out / G.GENERATION_NAME).read_text())["config"]
    assert {k: gen[k] for k in SamplingSettings.make("student", 2).as_record()} == SamplingSettings.make("student", 2).as_record()
