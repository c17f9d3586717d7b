"""Reward / judge leakage: which benchmark dimensions are scored by a model a variant trained on.

A student trained to raise a reward model's score is then judged, on some dimensions, by an
evaluator that is the same network (T2V-Turbo (MS) trains on ViCLIP, and VBench 0.1.5 scores
temporal_style and overall_consistency with the same ViCLIP checkpoint) or one of the same
family (HPSv2.1 is an OpenCLIP ViT-H/14; VBench scores aesthetic quality with a CLIP ViT-L/14
and background consistency / appearance style with a CLIP ViT-B/32). Those dimensions reward
the training signal itself. This module declares both maps and finds the leaking
(variant, dimension) cells; `bench.report.statistics.composites(..., exclude=...)` gives the
held-out Total without them.

Two kinds are kept apart: "weights" (the same checkpoint file judges what it trained) and
"family" (the same architecture family with other weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping


@dataclass(frozen=True)
class Network:
    """A pretrained network: `weights` names the checkpoint, `family` the architecture family."""

    weights: str
    family: str


# VBench 0.1.5's evaluator per dimension (vbench/utils.py init_submodules and the dimension
# modules); None: no network (temporal_flickering is a pixel MAE).
_CLIP_B32 = Network("openai CLIP ViT-B/32 (ViT-B-32.pt)", "clip")
_GRIT = Network("GRiT grit_b_densecap_objectdet.pth", "grit")
_VICLIP = Network("ViCLIP ViClip-InternVid-10M-FLT.pth", "viclip")
VBENCH_EVALUATORS: Mapping[str, tuple[Network, ...]] = {
    "subject_consistency": (Network("DINO ViT-B/16 dino_vitbase16_pretrain.pth", "dino"),),
    "background_consistency": (_CLIP_B32,),
    "temporal_flickering": (),
    "motion_smoothness": (Network("AMT-S amt-s.pth", "amt"),),
    "dynamic_degree": (Network("RAFT raft-things.pth", "raft"),),
    "aesthetic_quality": (Network("openai CLIP ViT-L/14 (ViT-L-14.pt) + LAION aesthetic head", "clip"),),
    "imaging_quality": (Network("MUSIQ musiq_spaq_ckpt-358bb6af.pth", "musiq"),),
    "object_class": (_GRIT,),
    "multiple_objects": (_GRIT,),
    "human_action": (Network("UMT-L/16 l16_ptk710_ftk710_ftk400_f16_res224.pth", "umt"),),
    "color": (_GRIT,),
    "spatial_relationship": (_GRIT,),
    "scene": (Network("Tag2Text tag2text_swin_14m.pth", "tag2text"),),
    "appearance_style": (_CLIP_B32,),
    "temporal_style": (_VICLIP,),
    "overall_consistency": (_VICLIP,),
}

# The tiny world's evaluators (bench/tinyworld/score/, weights in bench/tinyworld/zoo/).
_PROBE = Network("tiny zoo eval_probe.safetensors", "tiny-frame-probe")
_CLIP_PROBE = Network("tiny zoo eval_clip.safetensors", "tiny-clip-probe")
_QUALITY = Network("tiny zoo eval_quality.safetensors", "tiny-quality-net")
TINY_EVALUATORS: Mapping[str, tuple[Network, ...]] = {
    "subject_consistency": (_PROBE,), "background_consistency": (_PROBE,), "temporal_flickering": (),
    "motion_smoothness": (), "dynamic_degree": (), "aesthetic_quality": (_QUALITY,), "imaging_quality": (_QUALITY,),
    "object_class": (_PROBE,), "multiple_objects": (_PROBE,), "human_action": (_CLIP_PROBE,), "color": (_PROBE,),
    "spatial_relationship": (_PROBE,), "scene": (_PROBE,), "appearance_style": (_PROBE,),
    "temporal_style": (_CLIP_PROBE,),
    # TinyViCLIP architecture, trained separately from the rm_viclip reward model.
    "overall_consistency": (Network("tiny zoo eval_vt.safetensors", "tiny-viclip"),),
}

EVALUATORS: Mapping[str, Mapping[str, tuple[Network, ...]]] = {"vbench": VBENCH_EVALUATORS, "tiny": TINY_EVALUATORS}

# Reward models by (teacher kind, config name). T2V-Turbo's ViCLIP reward loads the same
# ViClip-InternVid-10M-FLT checkpoint that VBench uses; HPSv2.1 and PickScore fine-tune an
# OpenCLIP / CLIP ViT-H/14.
REAL_REWARDS: Mapping[str, Network] = {
    "hpsv21": Network("HPSv2.1 HPS_v2.1_compressed.pt (OpenCLIP ViT-H/14)", "clip"),
    "pickscore": Network("PickScore_v1 (CLIP ViT-H/14)", "clip"),
    "viclip": _VICLIP,
    "internvid2": Network("InternVideo2 Stage-2 1B InternVideo2-stage2_1b-224p-f4.pt", "internvideo2"),
}
TINY_REWARDS: Mapping[str, Network] = {
    "image": Network("tiny zoo rm_image.safetensors", "tiny-image-text"),
    "viclip": Network("tiny zoo rm_viclip.safetensors", "tiny-viclip"),
    "internvid2": Network("tiny zoo rm_internvid2.safetensors", "tiny-internvid2"),
}


def trained_rewards(config: Mapping[str, Any]) -> list[tuple[str, Network]]:
    """The reward models a training config (a run.json `config`) trained on."""
    variant = str(config.get("variant", ""))
    parts = variant.split("+")
    table = TINY_REWARDS if config.get("teacher") == "tiny" else REAL_REWARDS
    out = []
    if "img" in parts:
        name = config.get("rm_img", "image" if config.get("teacher") == "tiny" else "hpsv21")
        if name in table:
            out.append((name, table[name]))
    if "vid" in parts:
        name = config.get("rm_vid", "viclip")
        if name in table:
            out.append((name, table[name]))
    return out


def leaking_cells(benchmark: str, config: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """One row per (dimension, reward) where the dimension's evaluator shares weights or
    family with a reward model `config` trained on. An untrained model (the teacher) has none."""
    if not config:
        return []
    evaluators = EVALUATORS.get(benchmark, {})
    rows = []
    for reward_name, reward in trained_rewards(config):
        for dim, nets in evaluators.items():
            for net in nets:
                if net.weights == reward.weights:
                    kind = "weights"
                elif net.family == reward.family:
                    kind = "family"
                else:
                    continue
                rows.append({"dimension": dim, "reward": reward_name, "kind": kind, "evaluator": net.weights,
                             "reward_weights": reward.weights})
    return rows


def excluded_dimensions(cells: Iterable[Mapping[str, str]], kinds: Iterable[str]) -> list[str]:
    """The dimensions a held-out Total leaves out: any flagged with one of `kinds`."""
    kinds = set(kinds)
    return sorted({c["dimension"] for c in cells if c["kind"] in kinds})
