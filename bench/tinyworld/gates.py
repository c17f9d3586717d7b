"""How well the tiny benchmark's evaluators read the world: accuracy on held-out renders.

The tiny benchmark (bench/tinyworld/score/) is only as good as its evaluators, so their
accuracy is measured on freshly rendered clips whose ground truth is known exactly
(bench/tinyworld/labels.py) and which no evaluator was trained on: clips are drawn from the
training distribution (`world.sample_scene`) with numpy seeds [seed, i], and training drew
its batches with seeds [s, step] for s in 101..603, so seed 900 (the default) is disjoint.

`evaluator_accuracy` returns plain numbers; `gate_failures` compares them with
`GATE_TARGETS` (classification accuracy >= 95% on clean renders).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from bench.tinyworld import degrade
from bench.tinyworld.labels import IGNORE, clip_labels, frame_labels
from bench.tinyworld.render import render
from bench.tinyworld.world import SIZE, caption, perturb_spec, sample_scene

HELD_OUT_SEED = 900
# Hard negatives per clip for overall-consistency retrieval: captions with one factor changed
# (world.perturb_spec), as the evaluation video-text model was trained against.
RETRIEVAL_NEGATIVES = 7
# Degradation severities for the quality check: the range the quality net was trained on
# (degrade.random_degradation draws severities in [0.15, 1]).
SEVERITY_RANGE = (0.15, 1.0)

# Lower bounds, except position_error_px (an upper bound, in pixels of a 32 px frame).
GATE_TARGETS: Mapping[str, float] = {
    "presence": 0.95,
    "color": 0.95,
    "scene": 0.95,
    "style": 0.95,
    "action": 0.95,
    "camera": 0.95,
    "overall_consistency_top1": 0.95,
    "quality_imaging": 0.95,
    "quality_aesthetic": 0.95,
    "position_error_px": 1.5,
}
UPPER_BOUNDS = frozenset({"position_error_px"})


def held_out_specs(n_clips: int, seed: int = HELD_OUT_SEED) -> list:
    return [sample_scene(np.random.default_rng([seed, i])) for i in range(n_clips)]


@torch.no_grad()
def evaluator_accuracy(evaluators: Mapping[str, Any], n_clips: int = 256, seed: int = HELD_OUT_SEED,
                       batch: int = 64) -> dict[str, float]:
    """Accuracies of the tiny evaluators on `n_clips` clean held-out renders.

    * presence: per (frame, shape) agreement of `sigmoid(presence) > 0.5` with visibility;
      presence_frame_exact: frames where all five shapes are right.
    * color: argmax colour of each visible object (not in grayscale clips).
    * position_error / position_error_px: mean distance between predicted and true centres of
      visible objects, in screen units ([-1, 1] spans the frame) and in pixels.
    * scene: per frame. style: frames with a visible object, as appearance_style's prompts
      all have one (solid, outline and striped differ only on objects, so an empty frame's
      style is unknowable); style_all_frames: every frame. camera: every clip.
    * action: single-object clips with a static camera, as human_action's prompts are;
      action_any_camera: every single-object clip. With a moving camera an action can
      cancel on screen (moving right while the camera pans right moves 0.1 of the frame;
      shrinking while the camera zooms in), which no evaluator can read.
    * overall_consistency_top1: the eval video-text model ranks a clip's caption above all
      of its RETRIEVAL_NEGATIVES one-factor-changed captions; overall_consistency_pairwise:
      above each of them (chance 0.5).
    * quality_imaging / quality_aesthetic: a clean frame scores higher than the same frame
      with a random imaging (blur, noise, pixelate) / aesthetic (desaturate, low contrast,
      colour cast, exposure, clutter) degradation, on the matching head.
    """
    probe, clip_probe, quality, vt = (evaluators[k] for k in ("probe", "clip", "quality", "vt"))
    rng = np.random.default_rng([seed, 10**6])  # negatives and degradations, apart from the clips
    gen = torch.Generator().manual_seed(seed)
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}

    def add(key: str, total: float, n: float) -> None:
        sums[key] = sums.get(key, 0.0) + float(total)
        counts[key] = counts.get(key, 0.0) + float(n)

    specs_all = held_out_specs(n_clips, seed)
    for start in range(0, n_clips, batch):
        specs = specs_all[start : start + batch]
        clips = render(specs)
        b, f = clips.shape[:2]
        frames = clips.flatten(0, 1)

        lab = {k: v.flatten(0, 1) for k, v in frame_labels(specs).items()}
        out = probe(frames)
        pred = torch.sigmoid(out["presence"]) > 0.5
        truth = lab["presence"] > 0.5
        add("presence", (pred == truth).sum(), truth.numel())
        add("presence_frame_exact", (pred == truth).all(-1).sum(), truth.shape[0])
        cmask = lab["color"] != IGNORE
        add("color", (out["color"].argmax(-1) == lab["color"])[cmask].sum(), cmask.sum())
        dist = (out["position"] - lab["position"]).norm(dim=-1)[truth]
        add("position_error", dist.sum(), dist.numel())
        add("scene", (out["scene"].argmax(-1) == lab["scene"]).sum(), lab["scene"].numel())
        style_right = out["style"].argmax(-1) == lab["style"]
        with_object = truth.any(-1)
        add("style", style_right[with_object].sum(), with_object.sum())
        add("style_all_frames", style_right.sum(), style_right.numel())

        clab = clip_labels(specs)
        cout = clip_probe(clips)
        single = torch.tensor([len(s.objects) == 1 for s in specs])
        still_camera = single & torch.tensor([s.camera == "static" for s in specs])
        right = cout["action"].argmax(-1) == clab["action"]
        add("action", right[still_camera].sum(), still_camera.sum())
        add("action_any_camera", right[single].sum(), single.sum())
        add("camera", (cout["camera"].argmax(-1) == clab["camera"]).sum(), b)

        video = vt.encode_video(clips)
        for i, s in enumerate(specs):
            true = caption(s)
            negs = list(dict.fromkeys(c for c in (caption(perturb_spec(rng, s)) for _ in range(RETRIEVAL_NEGATIVES)) if c != true))
            text = vt.encode_text([true, *negs])
            sims = text @ video[i]
            add("overall_consistency_top1", float(sims[0] > sims[1:].max()) if negs else 1.0, 1)
            add("overall_consistency_pairwise", (sims[0] > sims[1:]).sum(), len(negs))

        pick = clips[torch.arange(b), torch.from_numpy(rng.integers(0, f, b))]
        clean = quality(pick)
        for head, kinds in (("imaging", degrade.IMAGING), ("aesthetic", degrade.AESTHETIC)):
            bad = torch.empty_like(pick)
            for i in range(b):
                kind = str(rng.choice(kinds))
                sev = float(rng.uniform(*SEVERITY_RANGE))
                bad[i] = degrade.apply(kind, pick[i : i + 1, None], sev, gen)[0, 0]
            add(f"quality_{head}", (clean[head] > quality(bad)[head]).sum(), b)

    acc = {k: sums[k] / counts[k] if counts[k] else float("nan") for k in sums}
    acc["position_error_px"] = acc["position_error"] * SIZE / 2
    acc["n_clips"] = float(n_clips)
    acc["seed"] = float(seed)
    return acc


def gate_failures(accuracy: Mapping[str, float], targets: Mapping[str, float] = GATE_TARGETS) -> list[str]:
    """One line per metric that misses its target (empty when every gate passes)."""
    failed = []
    for key, target in targets.items():
        value = accuracy.get(key)
        if value is None or value != value:
            failed.append(f"{key}: not measured")
        elif key in UPPER_BOUNDS and value > target:
            failed.append(f"{key}: {value:.3f} > {target}")
        elif key not in UPPER_BOUNDS and value < target:
            failed.append(f"{key}: {value:.3f} < {target}")
    return failed


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.tinyworld.gates [--zoo DIR] [--n-clips N] [--seed S]`: the accuracies as
    JSON on stdout; exit 1 when a gate fails (until `bench zoo check` wires this in)."""
    import argparse
    import json

    from bench.tinyworld.zoo import load_tiny_evaluators

    parser = argparse.ArgumentParser(prog="python -m bench.tinyworld.gates", description=main.__doc__)
    parser.add_argument("--zoo", default=None, help="zoo folder (default: $BENCH_TINY_ZOO or the shipped zoo)")
    parser.add_argument("--n-clips", type=int, default=256)
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    acc = evaluator_accuracy(load_tiny_evaluators(args.zoo), n_clips=args.n_clips, seed=args.seed)
    failed = gate_failures(acc)
    print(json.dumps({"accuracy": acc, "targets": dict(GATE_TARGETS), "failed": failed}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
