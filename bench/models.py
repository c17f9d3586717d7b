"""The one registry of the models bench builds: teachers and reward models.

Each entry has one spelling, the one configs, run records and reports use (`teacher`,
`rm_img`, `rm_vid`); an older or alternative spelling is an alias, accepted in configs and
on the command line and turned into the entry's name (so `rm_vid=internvideo2` trains the
same model as `rm_vid=internvid2`, and the run records `internvid2`). `weights` names the
entries of bench/weights.py (the real checkpoints: where they are looked for, where to get
them) or, for the tiny world, the zoo's files; `loader` is the function that builds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class ModelSpec:
    name: str
    role: str  # "teacher", "image reward" or "video reward"
    weights: tuple[str, ...]
    loader: str  # "module:function"
    description: str
    aliases: tuple[str, ...] = ()
    tiny: bool = False  # a model of the embedded tiny world (its zoo), not a real checkpoint


def _table(*specs: ModelSpec) -> Mapping[str, ModelSpec]:
    return MappingProxyType({s.name: s for s in specs})


TEACHERS = _table(
    ModelSpec("tiny", "teacher", ("tiny_zoo",), "bench.tinyworld.zoo:load_tiny_teacher",
              "the tiny world's latent video diffusion teacher (shipped zoo)", tiny=True),
    ModelSpec("ms", "teacher", ("modelscope_t2v",), "t2v_turbo_core.teachers:load_modelscope",
              "ModelScopeT2V (diffusers layout)"),
    ModelSpec("vc2", "teacher", ("videocrafter2",), "t2v_turbo_core.teachers:load_videocrafter2",
              "VideoCrafter2 (LVDM checkpoint)"),
)

IMAGE_REWARDS = _table(
    ModelSpec("hpsv21", "image reward", ("hpsv21",), "t2v_turbo_core.reward_models:load_hpsv21",
              "HPSv2.1 (the paper's image-text reward)"),
    ModelSpec("pickscore", "image reward", ("pickscore", "pickscore_processor"), "t2v_turbo_core.reward_models:load_pickscore",
              "PickScore"),
    ModelSpec("image", "image reward", ("rm_image.safetensors",), "bench.tinyworld.zoo:load_tiny_rewards",
              "the tiny world's image-text reward (HPSv2.1's role)", tiny=True),
)

# The video rewards: one entry serves a real teacher (its checkpoint) and the tiny teacher
# (the zoo's stand-in of the same family, `rm_<name>.safetensors`).
VIDEO_REWARDS = _table(
    ModelSpec("viclip", "video reward", ("viclip",), "t2v_turbo_core.reward_models:load_viclip",
              "ViCLIP (InternVid)"),
    ModelSpec("internvid2", "video reward", ("internvideo2", "internvideo2_tokenizer"),
              "t2v_turbo_core.reward_models:load_internvideo2", "InternVideo2 Stage-2",
              aliases=("internvideo2",)),
)


def canonical(name: str, table: Mapping[str, ModelSpec]) -> str:
    """The entry name for `name` or one of its aliases; an unknown name is returned as given
    (the caller's validation names the choices)."""
    if name in table:
        return name
    for spec in table.values():
        if name in spec.aliases:
            return spec.name
    return name


def reward_weights_name(rm_vid: str) -> str:
    """The bench/weights.py entry of a video reward's checkpoint (its first weight)."""
    return VIDEO_REWARDS[canonical(rm_vid, VIDEO_REWARDS)].weights[0]
