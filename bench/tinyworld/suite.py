"""The tiny benchmark's prompt suite, organised by VBench's 16 dimension names.

Like VBench's `VBench_full_info.json`, each entry names the dimensions it serves and carries
the structured ground truth its evaluators need (the role of `auxiliary_info`). Several
dimensions share prompt lists, as in VBench (subject consistency / motion smoothness /
dynamic degree; scene / background consistency; overall consistency / aesthetic / imaging
quality). The exact prompt strings are held out of the training captions of every model
in the zoo: generation is always on captions no model has seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.vbench.constants import QUALITY_DIMENSIONS, SEMANTIC_DIMENSIONS  # noqa: E402  (one source of truth)

DIMENSIONS = QUALITY_DIMENSIONS + SEMANTIC_DIMENSIONS


@dataclass(frozen=True)
class TinyPrompt:
    prompt: str
    dimensions: tuple[str, ...]
    # Ground truth: objects [(shape, color|None)], relation, action, scene, style, camera.
    auxiliary_info: dict = field(default_factory=dict, hash=False, compare=False)


def _obj(shape: str, color: str | None = None) -> dict:
    return {"shape": shape, "color": color}


_SUBJECT = ("subject_consistency", "motion_smoothness", "dynamic_degree")
_SCENE = ("background_consistency", "scene")
_OVERALL = ("overall_consistency", "aesthetic_quality", "imaging_quality")

_ENTRIES: list[tuple[str, tuple[str, ...], dict]] = [
    # subject consistency / motion smoothness / dynamic degree: a moving subject
    ("a red circle moving left", _SUBJECT, {"objects": [_obj("circle", "red")], "action": "moving left"}),
    ("a blue square moving up", _SUBJECT, {"objects": [_obj("square", "blue")], "action": "moving up"}),
    ("a yellow triangle growing", _SUBJECT, {"objects": [_obj("triangle", "yellow")], "action": "growing"}),
    ("a green star spinning", _SUBJECT, {"objects": [_obj("star", "green")], "action": "spinning"}),
    ("a purple cross moving down", _SUBJECT, {"objects": [_obj("cross", "purple")], "action": "moving down"}),
    ("a white square shrinking", _SUBJECT, {"objects": [_obj("square", "white")], "action": "shrinking"}),
    # temporal flickering: static scenes
    ("a green circle in a desert", ("temporal_flickering",), {"objects": [_obj("circle", "green")], "scene": "desert", "action": "still"}),
    ("a yellow square at night", ("temporal_flickering",), {"objects": [_obj("square", "yellow")], "scene": "night", "action": "still"}),
    ("a red triangle in a room", ("temporal_flickering",), {"objects": [_obj("triangle", "red")], "scene": "room", "action": "still"}),
    ("a white star underwater", ("temporal_flickering",), {"objects": [_obj("star", "white")], "scene": "underwater", "action": "still"}),
    ("a purple cross in a forest", ("temporal_flickering",), {"objects": [_obj("cross", "purple")], "scene": "forest", "action": "still"}),
    # scene / background consistency
    ("a desert", _SCENE, {"scene": "desert"}),
    ("a starry night", _SCENE, {"scene": "night"}),
    ("an empty room", _SCENE, {"scene": "room"}),
    ("the deep sea", _SCENE, {"scene": "underwater"}),
    ("a forest", _SCENE, {"scene": "forest"}),
    # object class
    ("a circle", ("object_class",), {"objects": [_obj("circle")]}),
    ("a square", ("object_class",), {"objects": [_obj("square")]}),
    ("a triangle", ("object_class",), {"objects": [_obj("triangle")]}),
    ("a cross", ("object_class",), {"objects": [_obj("cross")]}),
    ("a star", ("object_class",), {"objects": [_obj("star")]}),
    # multiple objects
    ("a red circle and a blue square", ("multiple_objects",), {"objects": [_obj("circle", "red"), _obj("square", "blue")]}),
    ("a yellow triangle and a green star", ("multiple_objects",), {"objects": [_obj("triangle", "yellow"), _obj("star", "green")]}),
    ("a white cross and a purple circle", ("multiple_objects",), {"objects": [_obj("cross", "white"), _obj("circle", "purple")]}),
    ("a blue star and a red triangle", ("multiple_objects",), {"objects": [_obj("star", "blue"), _obj("triangle", "red")]}),
    ("a green square and a yellow cross", ("multiple_objects",), {"objects": [_obj("square", "green"), _obj("cross", "yellow")]}),
    # action (VBench's human_action)
    ("a green circle moving right", ("human_action",), {"objects": [_obj("circle", "green")], "action": "moving right"}),
    ("a purple square moving left", ("human_action",), {"objects": [_obj("square", "purple")], "action": "moving left"}),
    ("a white triangle moving up", ("human_action",), {"objects": [_obj("triangle", "white")], "action": "moving up"}),
    ("a yellow cross moving down", ("human_action",), {"objects": [_obj("cross", "yellow")], "action": "moving down"}),
    ("a red square growing", ("human_action",), {"objects": [_obj("square", "red")], "action": "growing"}),
    ("a blue star shrinking", ("human_action",), {"objects": [_obj("star", "blue")], "action": "shrinking"}),
    ("a white cross spinning", ("human_action",), {"objects": [_obj("cross", "white")], "action": "spinning"}),
    # colour
    ("a red square", ("color",), {"objects": [_obj("square", "red")]}),
    ("a green triangle", ("color",), {"objects": [_obj("triangle", "green")]}),
    ("a blue cross", ("color",), {"objects": [_obj("cross", "blue")]}),
    ("a yellow star", ("color",), {"objects": [_obj("star", "yellow")]}),
    ("a purple circle", ("color",), {"objects": [_obj("circle", "purple")]}),
    ("a white triangle", ("color",), {"objects": [_obj("triangle", "white")]}),
    # spatial relationship
    ("a red circle to the left of a blue square", ("spatial_relationship",),
     {"objects": [_obj("circle", "red"), _obj("square", "blue")], "relation": "left of"}),
    ("a green triangle to the right of a yellow star", ("spatial_relationship",),
     {"objects": [_obj("triangle", "green"), _obj("star", "yellow")], "relation": "right of"}),
    ("a purple cross above a white circle", ("spatial_relationship",),
     {"objects": [_obj("cross", "purple"), _obj("circle", "white")], "relation": "above"}),
    ("a blue star below a red triangle", ("spatial_relationship",),
     {"objects": [_obj("star", "blue"), _obj("triangle", "red")], "relation": "below"}),
    ("a yellow square to the left of a purple cross", ("spatial_relationship",),
     {"objects": [_obj("square", "yellow"), _obj("cross", "purple")], "relation": "left of"}),
    ("a white triangle to the right of a green circle", ("spatial_relationship",),
     {"objects": [_obj("triangle", "white"), _obj("circle", "green")], "relation": "right of"}),
    # appearance style
    ("a red circle, in grayscale style", ("appearance_style",), {"objects": [_obj("circle", "red")], "style": "grayscale"}),
    ("a blue square, in outline style", ("appearance_style",), {"objects": [_obj("square", "blue")], "style": "outline"}),
    ("a yellow star, in striped style", ("appearance_style",), {"objects": [_obj("star", "yellow")], "style": "striped"}),
    ("a green triangle in a forest, in grayscale style", ("appearance_style",),
     {"objects": [_obj("triangle", "green")], "scene": "forest", "style": "grayscale"}),
    ("a purple cross at night, in outline style", ("appearance_style",),
     {"objects": [_obj("cross", "purple")], "scene": "night", "style": "outline"}),
    # temporal style (camera motion)
    ("a desert, camera pans left", ("temporal_style",), {"scene": "desert", "camera": "pan left"}),
    ("a forest, camera pans right", ("temporal_style",), {"scene": "forest", "camera": "pan right"}),
    ("an empty room, camera zooms in", ("temporal_style",), {"scene": "room", "camera": "zoom in"}),
    ("the deep sea, camera zooms out", ("temporal_style",), {"scene": "underwater", "camera": "zoom out"}),
    ("a red square in a room, camera pans right", ("temporal_style",),
     {"objects": [_obj("square", "red")], "scene": "room", "camera": "pan right"}),
    # overall consistency / aesthetic quality / imaging quality: full compositional prompts
    ("a red triangle moving right in a desert", _OVERALL,
     {"objects": [_obj("triangle", "red")], "action": "moving right", "scene": "desert"}),
    ("a blue circle growing underwater", _OVERALL, {"objects": [_obj("circle", "blue")], "action": "growing", "scene": "underwater"}),
    ("a yellow star spinning at night", _OVERALL, {"objects": [_obj("star", "yellow")], "action": "spinning", "scene": "night"}),
    ("a green cross moving up in a forest, in striped style", _OVERALL,
     {"objects": [_obj("cross", "green")], "action": "moving up", "scene": "forest", "style": "striped"}),
    ("a white square to the left of a red circle in a room", _OVERALL,
     {"objects": [_obj("square", "white"), _obj("circle", "red")], "relation": "left of", "scene": "room"}),
    ("a blue triangle moving left at night, camera zooms out", _OVERALL,
     {"objects": [_obj("triangle", "blue")], "action": "moving left", "scene": "night", "camera": "zoom out"}),
]


def tiny_suite(dimensions: list[str] | tuple[str, ...] | None = None) -> list[TinyPrompt]:
    """The suite, optionally restricted to prompts serving any of `dimensions`."""
    if dimensions is not None:
        unknown = sorted(set(dimensions) - set(DIMENSIONS))
        if unknown:
            raise ValueError(f"unknown dimension(s): {', '.join(unknown)}")
    entries = [TinyPrompt(p, dims, aux) for p, dims, aux in _ENTRIES]
    if dimensions is None:
        return entries
    wanted = set(dimensions)
    return [e for e in entries if wanted & set(e.dimensions)]


def held_out_prompts() -> frozenset[str]:
    return frozenset(p for p, _, _ in _ENTRIES)


def spec_for_prompt(entry: TinyPrompt, rng) -> "SceneSpec":
    """A clip of the world that satisfies a suite prompt (its unnamed factors drawn at random).

    Rendering these gives the "real videos" of each prompt, which score near the top of
    every dimension; caption(spec) == entry.prompt.
    """
    from dataclasses import replace

    from bench.tinyworld.world import (
        COLORS,
        SCENES,
        SceneSpec,
        caption,
        randomize_appearance,
        sample_object,
        sample_pair,
    )

    aux = entry.auxiliary_info
    objs = aux.get("objects", [])
    scene = aux.get("scene") or str(rng.choice(SCENES))
    named = "scene" in aux and bool(objs)
    style = aux.get("style", "solid")
    camera = aux.get("camera", "static")
    if len(objs) == 1:
        o = objs[0]
        obj = sample_object(rng, action=aux.get("action", "still"), shape=o["shape"], color=o["color"] or str(rng.choice(COLORS)))
        if o["color"] is None:
            obj = replace(obj, color_named=False)
        spec = SceneSpec(scene, (obj,), style=style, camera=camera, scene_named=named)
    elif len(objs) == 2:
        a, b = sample_pair(rng, aux.get("relation"), shapes=(objs[0]["shape"], objs[1]["shape"]),
                           colors=(objs[0]["color"], objs[1]["color"]))
        spec = SceneSpec(scene, (a, b), relation=aux.get("relation"), style=style, camera=camera, scene_named=named)
    else:
        spec = SceneSpec(scene, (), style=style, camera=camera)
    spec = randomize_appearance(rng, spec)
    if caption(spec) != entry.prompt:
        raise AssertionError(f"suite prompt {entry.prompt!r} renders as {caption(spec)!r}")
    return spec
