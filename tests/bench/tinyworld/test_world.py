"""The tiny world: captions, rendering, labels, tokenizers, suite, degradations."""

import numpy as np
import pytest
import torch

from bench.tinyworld import degrade
from bench.tinyworld.labels import IGNORE, clip_labels, frame_labels
from bench.tinyworld.render import render
from bench.tinyworld.suite import DIMENSIONS, held_out_prompts, spec_for_prompt, tiny_suite
from bench.tinyworld.world import (
    COLOR_RGB,
    FRAMES,
    SIZE,
    SceneSpec,
    ObjectSpec,
    caption,
    perturb_spec,
    sample_scene,
    screen_tracks,
    spec_from_dict,
    spec_to_dict,
    training_scene,
    vocabulary,
)


def test_rendering_is_deterministic_and_in_range():
    specs = [sample_scene(np.random.default_rng(s)) for s in range(6)]
    a, b = render(specs), render(specs)
    assert a.shape == (6, FRAMES, 3, SIZE, SIZE) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 and torch.isfinite(a).all()


def test_caption_grammar_reads_like_vbench_prompts():
    o = ObjectSpec("circle", "red", "moving left")
    spec = SceneSpec("desert", (o,), style="striped", camera="pan right")
    assert caption(spec) == "a red circle moving left in a desert, in striped style, camera pans right"
    pair = SceneSpec("room", (ObjectSpec("star", "blue"), ObjectSpec("cross", "white")), relation="left of", scene_named=False)
    assert caption(pair) == "a blue star to the left of a white cross"
    assert caption(SceneSpec("night", ())) == "a starry night"
    assert set(" ".join(caption(sample_scene(np.random.default_rng(s))) for s in range(200)).replace(",", " ").split()) <= set(vocabulary())


def test_objects_are_rendered_where_the_labels_say_with_their_colour():
    """Renderer and labels agree: the pixel at a labelled centre has the object's colour."""
    checked = 0
    for seed in range(40):
        spec = sample_scene(np.random.default_rng(seed))
        if spec.style != "solid" or not spec.objects:
            continue
        video = render([spec])[0]
        centres, visible = screen_tracks(spec)
        for j, o in enumerate(spec.objects):
            for t in range(FRAMES):
                if not visible[j, t] or o.shape in ("cross", "star"):  # thin centres: skip
                    continue
                x, y = ((centres[j, t] + 1) / 2 * SIZE).astype(int).clip(0, SIZE - 1)
                pixel = video[t, :, y, x].numpy()
                base = np.array(COLOR_RGB[o.color])
                # Small shapes are mostly their darker rim: accept the colour at any rim shade.
                shade = float(pixel @ base / (base @ base))
                assert 0.45 <= shade <= 1.1 and np.abs(pixel - shade * base).max() < 0.1, (caption(spec), t, pixel)
                checked += 1
    assert checked > 50


def test_motion_and_camera_move_objects_on_screen_the_right_way():
    left = SceneSpec("room", (ObjectSpec("square", "red", "moving left", x=0.35),))
    c, _ = screen_tracks(left)
    assert c[0, -1, 0] < c[0, 0, 0] - 0.5
    pan_left = SceneSpec("room", (ObjectSpec("square", "red"),), camera="pan left")
    c, _ = screen_tracks(pan_left)
    assert c[0, -1, 0] > c[0, 0, 0] + 0.4  # the view moves left: content moves right
    still = SceneSpec("room", (ObjectSpec("square", "red"),))
    v = render([still])[0]
    assert (v[1:] - v[:-1]).abs().max() == 0  # static prompts render static clips


def test_labels_match_specs():
    spec = SceneSpec("forest", (ObjectSpec("triangle", "yellow", "growing"),), style="grayscale", camera="zoom in")
    f = frame_labels([spec])
    assert f["presence"][0, :, 2].all() and f["presence"][0].sum() == FRAMES
    assert (f["color"][0] == IGNORE).all()  # no colour to learn in grayscale
    c = clip_labels([spec])
    assert c["action"].item() == 5 and c["camera"].item() == 3


def test_training_captions_never_hit_the_benchmark_prompts():
    held = held_out_prompts()
    rng = np.random.default_rng(0)
    assert not any(caption(training_scene(rng, held)) in held for _ in range(3000))


def test_hard_negatives_change_exactly_the_caption():
    rng = np.random.default_rng(3)
    for _ in range(200):
        spec = sample_scene(rng)
        neg = perturb_spec(rng, spec)
        assert caption(neg) != caption(spec)
        assert spec_from_dict(spec_to_dict(neg)) == neg


def test_suite_covers_the_16_dimensions_and_renders_its_prompts():
    suite = tiny_suite()
    assert {d for e in suite for d in e.dimensions} == set(DIMENSIONS)
    assert len({e.prompt for e in suite}) == len(suite) == 61
    rng = np.random.default_rng(0)
    for e in suite:
        assert caption(spec_for_prompt(e, rng)) == e.prompt
    with pytest.raises(ValueError, match="unknown"):
        tiny_suite(["colour"])


def test_tokenizers_make_each_world_word_one_token(tmp_path):
    from bench.tinyworld import models as M

    M.build_tokenizers(tmp_path)
    clip = M.load_clip_tokenizer(tmp_path)
    bert = M.load_bert_tokenizer(tmp_path)
    for word in vocabulary():
        assert len(clip.tokenize(word)) == 1, word
        assert len(bert.tokenize(word)) == 1, word
    # open_clip pools text at the argmax token id: end-of-text must be the largest id.
    assert clip.eos_token_id == len(clip) - 1


@pytest.mark.parametrize("name", sorted(degrade.DEGRADATIONS))
def test_degradations_keep_shape_and_range_and_change_the_clip(name):
    clip = render([sample_scene(np.random.default_rng(1))])
    out = degrade.apply(name, clip, 0.8, torch.Generator().manual_seed(0))
    assert out.shape == clip.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, clip)


def test_object_area_is_the_filled_shape_whatever_the_style():
    obj = ObjectSpec("square", "red", x=0.0, y=0.0)
    specs = [SceneSpec("room", (obj,), style=s) for s in ("solid", "outline")] + [SceneSpec("room", ())]
    video, area = render(specs, with_object_area=True)
    assert torch.equal(video, render(specs))  # asking for the area changes nothing else
    assert area.shape == (3, FRAMES, SIZE, SIZE) and area.min() >= 0 and area.max() <= 1
    torch.testing.assert_close(area[0], area[1])  # an outlined square covers its interior too
    assert area[2].sum() == 0
    c = SIZE // 2
    assert area[0, 0, c, c] == 1 and area[0, 0, 0, 0] == 0
    # Where the solid square is, the pixels differ from the empty room's.
    changed = (video[0] - video[2]).abs().amax(1) > 0.05
    assert (changed & (area[0] > 0.5)).sum() >= 0.95 * (area[0] > 0.5).sum()
