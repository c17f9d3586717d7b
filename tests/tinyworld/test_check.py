"""`bench zoo check`'s teacher readings: the shape confusion counts what the probe sees."""

import pytest
import torch

from bench.tinyworld import check as C
from bench.tinyworld.render import render
from bench.tinyworld.world import COLORS, SHAPES, ObjectSpec, SceneSpec
from bench.tinyworld.zoo import load_tiny_evaluators


def _drawer(draw_shape):
    """A stand-in teacher sampler that renders, for each prompt, the shape `draw_shape(asked)`."""

    def samples(_teacher, prompts, _seed):
        specs = []
        for p in prompts:
            words = p.split()
            color = words[1] if len(words) == 3 else COLORS[0]
            specs.append(SceneSpec("room", (ObjectSpec(draw_shape(words[-1]), color),)))
        return render(specs)

    return samples


@pytest.fixture(scope="module")
def evaluators():
    return load_tiny_evaluators()  # the shipped, trained evaluators


def test_a_teacher_that_draws_what_it_is_asked_scores_the_diagonal(monkeypatch, evaluators):
    monkeypatch.setattr(C, "_teacher_samples", _drawer(lambda s: s))
    r = C.teacher_shapes(None, evaluators, repeats=1)
    assert r["videos"] == len(SHAPES) * (len(COLORS) + 2)
    assert r["forced_choice_accuracy"] >= 0.9 and r["detected_accuracy"] >= 0.9
    assert sum(map(sum, r["confusion"])) == r["videos"]


def test_a_teacher_that_draws_only_circles_is_at_chance(monkeypatch, evaluators):
    monkeypatch.setattr(C, "_teacher_samples", _drawer(lambda s: "circle"))
    r = C.teacher_shapes(None, evaluators, repeats=1)
    conf, c = torch.tensor(r["confusion"]), SHAPES.index("circle")
    assert conf[:, c].sum() >= 0.9 * r["videos"]  # read as circles, whatever was asked
    assert r["forced_choice_accuracy"] == pytest.approx(conf.diagonal().sum().item() / r["videos"])
    assert r["forced_choice_accuracy"] <= 0.25
