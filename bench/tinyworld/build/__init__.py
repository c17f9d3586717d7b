"""`bench zoo build`: train every model of the tiny world from scratch, resumably.

Each stage trains one model (or a pair) on clips rendered on the fly, checkpoints its
whole state (weights, optimiser, EMA, step) atomically every few hundred steps under the
work directory, and on completion exports fp16 safetensors into the zoo directory plus an
entry in `zoo.json` (config, steps, wall time). A stage whose export exists is skipped; an
interrupted stage resumes from its last checkpoint. Batches are a pure function of
(stage seed, step), so a resumed run sees exactly the data it would have seen.

The package (every name stays importable as `bench.tinyworld.build.X`):

  common.py    the zoo's manifest, the resumable training loop, a stage's export
  teacher.py   tokenizers, VAE, the teacher's training clips, the teacher and its phases
  judges.py    the reward models and evaluators (the judges)

`STAGES` lists every stage in build order (`bench zoo build` runs them in it).
"""

from __future__ import annotations

from typing import Callable

from bench.tinyworld.build.common import (  # noqa: F401
    Context, DEFAULT_WORK_DIR, DEFAULT_ZOO_DIR, EMA, StageError, atomic_torch_save, batch_rng, export,
    lr_factor, read_manifest, stage_done, train_loop, update_manifest, write_manifest,
)
from bench.tinyworld.build.teacher import (  # noqa: F401
    AttentionMapProcessor, CAPTION_DROPOUT, CONTRAST_DECAY_FROM, CONTRAST_LR, CONTRAST_MARGIN, CONTRAST_PAIRS,
    CONTRAST_STEPS, CONTRAST_WEIGHT, GRAFT_DECAY_FROM, GRAFT_EMA, GRAFT_LR, GRAFT_STEPS, GROUND_MASK_MIN,
    GROUND_WEIGHT, LAYOUT_CLIPS, LAYOUT_LR, LAYOUT_STEPS, LAYOUT_T_MIN, LAYOUT_WEIGHT, LAYOUT_X0_CAP,
    POSITION_LR_SCALE, PREVIEW_PROMPTS, RELATION_FLIP_PROB, SHAPE_LR, SHAPE_STEPS, SHAPE_WEIGHT, SHARD,
    TEACHER_BATCH, TEACHER_CLIPS, TEACHER_DECAY_FROM, TEACHER_LR, TEACHER_STAGES, TEACHER_STEPS, VAE_STEPS,
    _shard_specs, _teacher_preview, contrast_loss, contrast_negative, grounding_loss, layout_weight,
    object_token_positions, object_weight, object_word_positions, stage_teacher, stage_teacher_data,
    stage_tokenizers, stage_vae, teacher_lr,
)
from bench.tinyworld.build.judges import (  # noqa: F401
    JUDGE_STAGES, JUDGE_STEPS, RECON_POOL, _mild_augment, _negatives, _recon_pool, _video_text_stage,
    contrastive_loss, judge_batch, stage_eval_clip, stage_eval_probe, stage_eval_quality, stage_eval_vt,
    stage_recon_pool, stage_rm_image, stage_rm_internvid2, stage_rm_viclip, strided_frames,
)

STAGES: dict[str, Callable[[Context], None]] = {**TEACHER_STAGES, **JUDGE_STAGES}
