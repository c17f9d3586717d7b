"""The tiny world: a procedural text-to-video domain small enough to train on a laptop CPU.

Videos are 8 frames of 32x32 RGB at 8 fps. Each clip is described by a `SceneSpec` whose
factors are exactly what VBench's 16 dimensions probe: object class, colour, several
objects, their spatial relation, the subject's action, the scene (background), the
appearance style, the camera motion (temporal style), and static clips (temporal
flickering). Captions are compositional and read like VBench prompts:

    "a red circle moving left in a desert, in striped style, camera pans right"

Everything is deterministic from a seed; the world is unlimited in size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

FRAMES = 8
SIZE = 32
FPS = 8

SHAPES = ("circle", "square", "triangle", "cross", "star")
COLORS = ("red", "green", "blue", "yellow", "purple", "white")
COLOR_RGB = {
    "red": (0.90, 0.15, 0.15),
    "green": (0.20, 0.80, 0.25),
    "blue": (0.20, 0.35, 0.95),
    "yellow": (0.95, 0.85, 0.15),
    "purple": (0.60, 0.20, 0.80),
    "white": (0.95, 0.95, 0.95),
}
ACTIONS = ("still", "moving left", "moving right", "moving up", "moving down", "growing", "shrinking", "spinning")
SCENES = ("desert", "night", "room", "underwater", "forest")
# (noun phrase for scene-only prompts, prepositional phrase after a subject)
SCENE_PHRASES = {
    "desert": ("a desert", "in a desert"),
    "night": ("a starry night", "at night"),
    "room": ("an empty room", "in a room"),
    "underwater": ("the deep sea", "underwater"),
    "forest": ("a forest", "in a forest"),
}
STYLES = ("solid", "grayscale", "outline", "striped")
CAMERAS = ("static", "pan left", "pan right", "zoom in", "zoom out")
CAMERA_PHRASES = {
    "pan left": "camera pans left",
    "pan right": "camera pans right",
    "zoom in": "camera zooms in",
    "zoom out": "camera zooms out",
}
RELATIONS = ("left of", "right of", "above", "below")
RELATION_PHRASES = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
OPPOSITE_RELATION = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
# A relation is an axis (which way the two objects are laid out) and a direction along it (which
# object goes first): a teacher can get the first right and the second at chance.
RELATION_AXIS = {"left of": "horizontal", "right of": "horizontal", "above": "vertical", "below": "vertical"}


@dataclass(frozen=True)
class ObjectSpec:
    shape: str
    color: str
    action: str = "still"
    x: float = 0.0  # centre at the first frame, world units (the view spans [-1, 1])
    y: float = 0.0
    radius: float = 0.38
    angle: float = 0.0
    # Whether the caption names the colour (object-class prompts say only "a circle").
    color_named: bool = True


@dataclass(frozen=True)
class SceneSpec:
    scene: str
    objects: tuple[ObjectSpec, ...] = ()
    relation: str | None = None  # objects[0] <relation> objects[1]
    style: str = "solid"
    camera: str = "static"
    scene_named: bool = True
    # Per-clip appearance variation of the background (does not change its identity).
    scene_offset: float = 0.0
    scene_jitter: float = 0.0
    color_jitter: tuple[float, ...] = field(default=())

    @property
    def is_static(self) -> bool:
        return self.camera == "static" and all(o.action == "still" for o in self.objects)


def _subject_phrase(o: ObjectSpec) -> str:
    return f"a {o.color} {o.shape}" if o.color_named else f"a {o.shape}"


def caption(spec: SceneSpec) -> str:
    """The clip's caption; a factor the caption leaves out is unconstrained (or static)."""
    if not spec.objects:
        text = SCENE_PHRASES[spec.scene][0]
    else:
        a = spec.objects[0]
        if len(spec.objects) == 1:
            text = _subject_phrase(a)
            if a.action != "still":
                text += f" {a.action}"
        elif spec.relation is not None:
            text = f"{_subject_phrase(a)} {RELATION_PHRASES[spec.relation]} {_subject_phrase(spec.objects[1])}"
        else:
            text = f"{_subject_phrase(a)} and {_subject_phrase(spec.objects[1])}"
        if spec.scene_named:
            text += f" {SCENE_PHRASES[spec.scene][1]}"
    if spec.style != "solid":
        text += f", in {spec.style} style"
    if spec.camera != "static":
        text += f", {CAMERA_PHRASES[spec.camera]}"
    return text


def short_caption(spec: SceneSpec) -> str:
    """The clip's short caption: what the subject is and does, without the scene, style and camera.

    T2V-Turbo-v2's data decoupling trains consistency on long, detailed captions and scores the
    rewards against short ones. In the tiny world `caption` is the long form; this drops the
    clauses a short web caption leaves out (a factor a caption leaves out is unconstrained, so
    the short form still describes the clip). Scene-only clips keep their scene: it is the subject.
    """
    if not spec.objects:
        return SCENE_PHRASES[spec.scene][0]
    return caption(replace(spec, scene_named=False, style="solid", camera="static"))


def vocabulary() -> list[str]:
    """Every word a caption can contain (for tokenizers)."""
    words: set[str] = set()
    for phrase in [*SHAPES, *COLORS, *ACTIONS, *STYLES, "style", "in", "and", "a", "an", "the", "camera"]:
        words.update(phrase.split())
    for np_, pp in SCENE_PHRASES.values():
        words.update(np_.split())
        words.update(pp.split())
    for p in [*CAMERA_PHRASES.values(), *RELATION_PHRASES.values()]:
        words.update(p.split())
    return sorted(words)


# --- sampling -------------------------------------------------------------------------

# Screen displacement of a moving object over the clip, and the zoom range of the camera.
MOTION_SPAN = 0.7
ZOOM_RANGE = (1.0, 1.45)
PAN_SPAN = 0.6


def _placement_for_action(rng: np.random.Generator, action: str, radius: float) -> tuple[float, float]:
    """A start position that keeps the whole trajectory inside the view."""
    lim = 0.95 - radius
    half = MOTION_SPAN / 2
    x_lo, x_hi, y_lo, y_hi = -lim * 0.6, lim * 0.6, -lim * 0.6, lim * 0.6
    if action == "moving left":
        x_lo, x_hi = -lim + MOTION_SPAN, lim
        x_lo, x_hi = max(x_lo, half - 0.1), min(x_hi, half + 0.1)
    elif action == "moving right":
        x_lo, x_hi = -half - 0.1, -half + 0.1
    elif action == "moving up":
        y_lo, y_hi = half - 0.1, half + 0.1
    elif action == "moving down":
        y_lo, y_hi = -half - 0.1, -half + 0.1
    elif action in ("growing", "shrinking"):
        x_lo, x_hi, y_lo, y_hi = -0.15, 0.15, -0.15, 0.15
    return float(rng.uniform(x_lo, x_hi)), float(rng.uniform(y_lo, y_hi))


def sample_object(rng: np.random.Generator, action: str | None = None, shape: str | None = None, color: str | None = None) -> ObjectSpec:
    shape = shape or str(rng.choice(SHAPES))
    if action is None:
        choices = [a for a in ACTIONS if not (a == "spinning" and shape == "circle")]
        # Half of the single-object clips are still: static prompts matter (temporal flickering).
        action = "still" if rng.random() < 0.35 else str(rng.choice([a for a in choices if a != "still"]))
    radius = float(rng.uniform(0.32, 0.42))
    x, y = _placement_for_action(rng, action, radius)
    return ObjectSpec(
        shape=shape,
        color=color or str(rng.choice(COLORS)),
        action=action,
        x=x,
        y=y,
        radius=radius,
        angle=float(rng.uniform(0, 2 * math.pi)) if shape != "circle" else 0.0,
    )


def pair_positions(rng: np.random.Generator, relation: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """Centres of objects[0] and objects[1] so that objects[0] <relation> objects[1] holds."""
    d = float(rng.uniform(0.48, 0.56))
    j1, j2 = (float(v) for v in rng.uniform(-0.08, 0.08, size=2))
    c = float(rng.uniform(-0.12, 0.12))
    if relation == "left of":
        return (-d + j1, c + j2), (d + j2, c - j1)
    if relation == "right of":
        return (d + j1, c + j2), (-d + j2, c - j1)
    if relation == "above":
        return (c + j2, -d + j1), (c - j1, d + j2)
    if relation == "below":
        return (c + j2, d + j1), (c - j1, -d + j2)
    raise ValueError(f"unknown relation {relation!r}")


def sample_pair(rng: np.random.Generator, relation: str | None, shapes: tuple[str, str] | None = None,
                colors: tuple[str, str] | None = None) -> tuple[ObjectSpec, ObjectSpec]:
    if shapes is None:
        s1, s2 = (str(s) for s in rng.choice(SHAPES, size=2, replace=False))
    else:
        s1, s2 = shapes
    if colors is None:
        c1, c2 = (str(c) for c in rng.choice(COLORS, size=2, replace=False))
    else:
        c1, c2 = colors
    layout = relation or str(rng.choice(RELATIONS))
    (x1, y1), (x2, y2) = pair_positions(rng, layout)
    # Large enough that the VAE (4x down-sampling) keeps each shape legible next to the other.
    r1, r2 = (float(v) for v in rng.uniform(0.30, 0.36, size=2))
    a1, a2 = (float(v) for v in rng.uniform(0, 2 * math.pi, size=2))
    return (
        ObjectSpec(s1, c1, "still", x1, y1, r1, a1 if s1 != "circle" else 0.0),
        ObjectSpec(s2, c2, "still", x2, y2, r2, a2 if s2 != "circle" else 0.0),
    )


def randomize_appearance(rng: np.random.Generator, spec: SceneSpec) -> SceneSpec:
    return replace(
        spec,
        scene_offset=float(rng.uniform(-0.6, 0.6)),
        scene_jitter=float(rng.uniform(-1.0, 1.0)),
        color_jitter=tuple(float(v) for v in rng.uniform(-0.06, 0.06, size=3 * max(1, len(spec.objects)))),
    )


def sample_scene(rng: np.random.Generator) -> SceneSpec:
    """One clip from the training distribution (the mix of prompt types VBench probes)."""
    kind = rng.random()
    scene = str(rng.choice(SCENES))
    style = "solid" if rng.random() < 0.7 else str(rng.choice(STYLES[1:]))
    camera = "static" if rng.random() < 0.75 else str(rng.choice(CAMERAS[1:]))
    scene_named = bool(rng.random() < 0.6)
    if kind < 0.5:
        obj = sample_object(rng)
        if rng.random() < 0.12:
            obj = replace(obj, color_named=False)
        spec = SceneSpec(scene, (obj,), style=style, camera=camera, scene_named=scene_named)
    elif kind < 0.65:
        a, b = sample_pair(rng, None)
        spec = SceneSpec(scene, (a, b), relation=None, style=style, camera=camera, scene_named=scene_named)
    elif kind < 0.88:
        rel = str(rng.choice(RELATIONS))
        a, b = sample_pair(rng, rel)
        spec = SceneSpec(scene, (a, b), relation=rel, style=style, camera=camera, scene_named=scene_named)
    else:
        spec = SceneSpec(scene, (), style=style, camera=camera, scene_named=True)
    return randomize_appearance(rng, spec)


# --- trajectories -----------------------------------------------------------------------


def object_track(o: ObjectSpec, frames: int = FRAMES) -> np.ndarray:
    """Per-frame (x, y, radius, angle) of an object in world units, shape [F, 4]."""
    tau = np.linspace(0.0, 1.0, frames)
    x = np.full(frames, o.x)
    y = np.full(frames, o.y)
    r = np.full(frames, o.radius)
    a = np.full(frames, o.angle)
    if o.action == "moving left":
        x = o.x - MOTION_SPAN * tau
    elif o.action == "moving right":
        x = o.x + MOTION_SPAN * tau
    elif o.action == "moving up":
        y = o.y - MOTION_SPAN * tau
    elif o.action == "moving down":
        y = o.y + MOTION_SPAN * tau
    elif o.action == "growing":
        r = o.radius * (0.7 + 0.6 * tau)
    elif o.action == "shrinking":
        r = o.radius * (1.3 - 0.6 * tau)
    elif o.action == "spinning":
        a = o.angle + 2.6 * tau
    return np.stack([x, y, r, a], axis=1)


def camera_track(camera: str, frames: int = FRAMES) -> np.ndarray:
    """Per-frame (cx, cy, zoom): a screen point s maps to the world point s / zoom + c."""
    tau = np.linspace(0.0, 1.0, frames)
    cx = np.zeros(frames)
    zoom = np.ones(frames)
    if camera == "pan left":
        cx = PAN_SPAN / 2 - PAN_SPAN * tau
    elif camera == "pan right":
        cx = -PAN_SPAN / 2 + PAN_SPAN * tau
    elif camera == "zoom in":
        zoom = ZOOM_RANGE[0] + (ZOOM_RANGE[1] - ZOOM_RANGE[0]) * tau
    elif camera == "zoom out":
        zoom = ZOOM_RANGE[1] - (ZOOM_RANGE[1] - ZOOM_RANGE[0]) * tau
    return np.stack([cx, np.zeros(frames), zoom], axis=1)


def training_scene(rng: np.random.Generator, held_out: frozenset[str] | set[str]) -> SceneSpec:
    """`sample_scene`, resampled until its caption is not one of the benchmark's prompts."""
    while True:
        spec = sample_scene(rng)
        if caption(spec) not in held_out:
            return spec


def perturb_spec(rng: np.random.Generator, spec: SceneSpec) -> SceneSpec:
    """A hard negative: the same clip description with exactly one named factor changed.

    Used to train the reward and evaluation models to tell captions apart that differ in one
    word (colour, shape, action, relation, scene, style, camera), not only whole captions.
    """
    options: list[str] = []
    if spec.objects:
        options += ["color", "shape"]
        if len(spec.objects) == 1:
            options.append("action")
        if spec.relation is not None:
            options.append("relation")
        if spec.scene_named:
            options.append("scene")
    else:
        options.append("scene")
    options += ["style", "camera"]
    what = str(rng.choice(options))
    if what in ("color", "shape"):
        i = int(rng.integers(len(spec.objects)))
        o = spec.objects[i]
        taken = {x.shape for x in spec.objects} if what == "shape" else {x.color for x in spec.objects}
        pool = [v for v in (SHAPES if what == "shape" else COLORS) if v not in taken]
        if what == "shape" and o.action == "spinning":
            pool = [v for v in pool if v != "circle"]
        new = replace(o, **{what: str(rng.choice(pool)), "color_named": True} if what == "color" else {what: str(rng.choice(pool))})
        objs = list(spec.objects)
        objs[i] = new
        return replace(spec, objects=tuple(objs))
    if what == "action":
        o = spec.objects[0]
        pool = [a for a in ACTIONS if a != o.action and not (a == "spinning" and o.shape == "circle")]
        return replace(spec, objects=(replace(o, action=str(rng.choice(pool))),))
    if what == "relation":
        return replace(spec, relation=str(rng.choice([r for r in RELATIONS if r != spec.relation])))
    if what == "scene":
        return replace(spec, scene=str(rng.choice([s for s in SCENES if s != spec.scene])))
    if what == "style":
        return replace(spec, style=str(rng.choice([s for s in STYLES if s != spec.style])))
    return replace(spec, camera=str(rng.choice([c for c in CAMERAS if c != spec.camera])))


def screen_tracks(spec: SceneSpec, frames: int = FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """Where each object appears on screen: centres [n, F, 2] in [-1, 1] units and
    visibility [n, F] (centre inside the frame), after the camera's pan / zoom."""
    cam = camera_track(spec.camera, frames)
    centres, visible = [], []
    for o in spec.objects:
        tr = object_track(o, frames)
        sx = (tr[:, 0] - cam[:, 0]) * cam[:, 2]
        sy = (tr[:, 1] - cam[:, 1]) * cam[:, 2]
        centres.append(np.stack([sx, sy], axis=1))
        visible.append((np.abs(sx) < 0.95) & (np.abs(sy) < 0.95))
    if not centres:
        return np.zeros((0, frames, 2)), np.zeros((0, frames), dtype=bool)
    return np.stack(centres), np.stack(visible)


def spec_to_dict(spec: SceneSpec) -> dict:
    from dataclasses import asdict

    return asdict(spec)


def spec_from_dict(d: dict) -> SceneSpec:
    objs = tuple(ObjectSpec(**o) for o in d["objects"])
    rest = {k: v for k, v in d.items() if k != "objects"}
    rest["color_jitter"] = tuple(rest.get("color_jitter", ()))
    return SceneSpec(objects=objs, **rest)
