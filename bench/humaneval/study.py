"""A human-evaluation study on disk: the blinded pairs, the raters, the votes.

STUDY/
  study.json     questions, seed, the models' sources (never sent to a rater's page)
  pairs.json     one entry per pair: opaque id, prompt, index, which model is left / right
  videos/        copies of the videos under opaque names (a name says nothing of its model)
  votes.sqlite   raters (token) and votes, WAL journal, one transaction per submitted pair

A pair shows two models' videos of the same prompt and index, which `bench generate` made
from the same seed, so the raters compare models and not luck of the draw.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import os
import secrets
import shutil
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from bench.errors import BenchError

# The paper's three questions (T2V-Turbo, human evaluation on EvalCrafter prompts).
QUESTIONS: tuple[dict[str, str], ...] = (
    {"id": "visual_quality", "text": "Which video has the better visual quality?"},
    {"id": "text_alignment", "text": "Which video matches the text better?"},
    {"id": "general_preference", "text": "Which video do you prefer overall?"},
)
CHOICES = ("left", "tie", "right")
STUDY_FILE, PAIRS_FILE, DB_FILE, VIDEOS_DIR = "study.json", "pairs.json", "votes.sqlite", "videos"


class StudyError(BenchError, ValueError):
    """Bad input to a humaneval verb (exit code 2)."""


@dataclass(frozen=True)
class Study:
    root: Path
    config: dict
    pairs: list[dict]

    @property
    def questions(self) -> list[dict]:
        return self.config["questions"]

    @property
    def db_path(self) -> Path:
        return self.root / DB_FILE

    def pair(self, pair_id: str) -> dict | None:
        return self._by_id.get(pair_id)

    @property
    def _by_id(self) -> dict[str, dict]:
        cached = self.__dict__.get("_index")
        if cached is None:
            cached = {p["id"]: p for p in self.pairs}
            object.__setattr__(self, "_index", cached)
        return cached


# --------------------------------------------------------------------------------------
# prepare


def _model_arg(value: str) -> tuple[str, Path]:
    """`DIR` or `NAME=DIR`."""
    name, sep, folder = value.partition("=")
    if not sep:
        folder, name = value, ""
    path = Path(folder)
    if not path.is_dir():
        raise StudyError(f"not a folder of generated videos: {path}")
    return name or _default_name(path), path


def _default_name(folder: Path) -> str:
    # RUN/videos/<label>/ -> "<run>/<label>"; any other folder -> its own name.
    folder = folder.resolve()
    return f"{folder.parent.parent.name}/{folder.name}" if folder.parent.name == "videos" else folder.name


def _videos(folder: Path) -> dict[tuple[str, int], tuple[Path, str]]:
    """(prompt, index) -> (file, prompt text), from the manifest when there is one, else the
    file name (`{prompt}-{index}.mp4`)."""
    from bench.report.statistics import video_name_parts

    prompts: dict[str, str] = {}
    for manifest in sorted(folder.glob("manifest*.jsonl")):
        for line in manifest.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("file"), str) and isinstance(rec.get("prompt"), str):
                prompts[rec["file"]] = rec["prompt"]
    out = {}
    for path in sorted(folder.glob("*.mp4")):
        if path.name.endswith(".partial.mp4") or path.stat().st_size == 0:
            continue
        try:
            prompt, index = video_name_parts(path.name)
        except ValueError:
            continue
        out[(prompt, index)] = (path, prompts.get(path.name, prompt))
    return out


def _opaque(seed: int, *parts: Any) -> str:
    return hashlib.sha256(json.dumps([seed, *parts]).encode()).hexdigest()[:16]


def prepare_study(models: Sequence[str], out: Path, seed: int | None = None, max_videos: int | None = None) -> Study:
    """Pair every two models' videos of the same prompt and index, randomise left / right per
    pair, hide the models behind opaque ids, and write the study folder atomically."""
    if len(models) < 2:
        raise StudyError("a study needs at least two models (--a and --b)")
    parsed = [_model_arg(m) for m in models]
    names = [n for n, _ in parsed]
    if len(set(names)) != len(names):
        raise StudyError(f"two models have the same name ({', '.join(names)}); name them NAME=DIR")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise StudyError(f"{out} exists and is not an empty folder; choose another --out")
    videos = {name: _videos(folder) for name, folder in parsed}
    for name, vids in videos.items():
        if not vids:
            raise StudyError(f"{dict(parsed)[name]}: no {{prompt}}-{{index}}.mp4 videos")
    common = sorted(set.intersection(*(set(v) for v in videos.values())))
    if not common:
        raise StudyError("the models have no video of the same prompt and index in common")
    if max_videos is not None:
        if max_videos < 1:
            raise StudyError(f"--max-videos {max_videos} must be >= 1")
        common = common[:max_videos]
    seed = int(seed if seed is not None else secrets.randbits(31))
    rng = np.random.default_rng(seed)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / VIDEOS_DIR).mkdir(parents=True)
    pairs = []
    copied: dict[tuple[str, tuple[str, int]], str] = {}

    def place(model: str, key: tuple[str, int]) -> str:
        if (model, key) not in copied:
            src = videos[model][key][0]
            rel = f"{VIDEOS_DIR}/{_opaque(seed, 'video', model, *key)}.mp4"
            shutil.copyfile(src, tmp / rel)
            copied[(model, key)] = rel
        return copied[(model, key)]

    for key in common:
        for first, second in itertools.combinations(names, 2):
            left, right = (first, second) if rng.random() < 0.5 else (second, first)
            pairs.append({
                "id": _opaque(seed, "pair", first, second, *key),
                "prompt": videos[first][key][1], "index": key[1],
                "left": {"model": left, "video": place(left, key)},
                "right": {"model": right, "video": place(right, key)},
            })
    config = {
        "version": 1,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "questions": list(QUESTIONS),
        "choices": list(CHOICES),
        "models": {name: {"source": str(folder.resolve())} for name, folder in parsed},
        "videos_per_model": len(common),
    }
    (tmp / STUDY_FILE).write_text(json.dumps(config, indent=2, allow_nan=False) + "\n")
    (tmp / PAIRS_FILE).write_text(json.dumps(pairs, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    with connect(tmp / DB_FILE):
        pass
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return load_study(out)


def load_study(root: Path) -> Study:
    root = Path(root)
    try:
        config = json.loads((root / STUDY_FILE).read_text())
        pairs = json.loads((root / PAIRS_FILE).read_text())
    except FileNotFoundError as err:
        raise StudyError(f"{root}: not a study folder (no {Path(err.filename).name}); make one with `bench humaneval prepare`") from None
    except ValueError as err:
        raise StudyError(f"{root}: unreadable study file ({err})") from None
    return Study(root, config, pairs)


# --------------------------------------------------------------------------------------
# the database


SCHEMA = """
CREATE TABLE IF NOT EXISTS raters (
    rater INTEGER PRIMARY KEY AUTOINCREMENT,
    token TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS votes (
    rater INTEGER NOT NULL REFERENCES raters(rater),
    pair TEXT NOT NULL,
    question TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'tie', 'right')),
    created TEXT NOT NULL,
    UNIQUE (rater, pair, question)
);
"""


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection in WAL mode with full syncs (a vote acknowledged is a vote on disk), in
    autocommit mode: every write below opens its own transaction. Closed on exit."""
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(SCHEMA)
        yield conn
    finally:
        conn.close()


def invite(study: Study, n: int) -> list[str]:
    """`n` new rater tokens (unguessable; a token is the rater's identity)."""
    if n < 1:
        raise StudyError(f"--n {n} must be >= 1")
    tokens = [secrets.token_urlsafe(16) for _ in range(n)]
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    with connect(study.db_path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO raters (token, created) VALUES (?, ?)", [(t, now) for t in tokens])
        conn.execute("COMMIT")
    return tokens


def rater_of(conn: sqlite3.Connection, token: str) -> int | None:
    row = conn.execute("SELECT rater FROM raters WHERE token = ?", (token,)).fetchone()
    return None if row is None else int(row[0])


def rater_order(study: Study, token: str) -> list[str]:
    """The rater's own random order of the pairs (the same on every visit)."""
    seed = int.from_bytes(hashlib.sha256(f"{study.config['seed']}:{token}".encode()).digest()[:8], "little")
    ids = [p["id"] for p in study.pairs]
    return [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]


def answered_pairs(conn: sqlite3.Connection, rater: int, n_questions: int) -> set[str]:
    rows = conn.execute("SELECT pair FROM votes WHERE rater = ? GROUP BY pair HAVING COUNT(*) >= ?", (rater, n_questions))
    return {r[0] for r in rows}


class VoteConflict(Exception):
    """The rater has already answered this pair: a replay changes nothing."""


def record_vote(conn: sqlite3.Connection, rater: int, pair: str, answers: dict[str, str]) -> None:
    """All answers of one pair in one transaction: either all are stored or none."""
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO votes (rater, pair, question, choice, created) VALUES (?, ?, ?, ?, ?)",
                         [(rater, pair, q, c, now) for q, c in answers.items()])
        conn.execute("COMMIT")
    except sqlite3.IntegrityError:
        conn.execute("ROLLBACK")
        raise VoteConflict(pair) from None


def all_votes(study: Study) -> list[dict]:
    with connect(study.db_path) as conn:
        rows = conn.execute("SELECT rater, pair, question, choice FROM votes ORDER BY rowid").fetchall()
    return [{"rater": r, "pair": p, "question": q, "choice": c} for r, p, q, c in rows]
