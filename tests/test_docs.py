"""The docs stand alone: every file they and the code point to is in the repository."""

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=REPO, capture_output=True, text=True).stdout.split()
    return [REPO / p for p in out] if out else [p for pat in patterns for p in REPO.glob(f"**/{pat}")]


def test_every_docs_reference_in_the_code_and_docs_resolves():
    """Every page or image under docs/ that code or docs name exists."""
    missing = []
    for path in _tracked("*.py", "*.md", "*.yaml", "Makefile"):
        if "reports/" in str(path.relative_to(REPO)):
            continue  # generated reports are records of their run
        for ref in re.findall(r"(?<![\w/.])docs/[\w./-]+\.(?:md|png)", path.read_text(encoding="utf-8", errors="replace")):
            if not (REPO / ref).is_file():
                missing.append(f"{path.relative_to(REPO)}: {ref}")
    assert missing == []


def test_relative_links_in_the_readme_and_docs_resolve():
    missing = []
    for path in [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            if not (path.parent / target).exists():
                missing.append(f"{path.relative_to(REPO)}: {target}")
    assert missing == []


def test_every_file_the_readme_names_exists():
    """The README's "I want to change X -> this file" table and layout name real files."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:t2v_turbo_core|bench|benchmarks|tests|docs|reports)/[\w./-]*)`", text))
    assert len(named) >= 20
    missing = sorted(n for n in named if "<" not in n and not (REPO / n.rstrip("/")).exists()
                     and not list(REPO.glob(n.rstrip("/") + "*")))
    assert missing == []


def test_nothing_in_the_repository_points_outside_it():
    hits = []
    for path in _tracked("*.py", "*.md", "*.txt", "*.yaml"):
        rel = str(path.relative_to(REPO))
        text = path.read_text(encoding="utf-8", errors="replace")
        # Spelled in pieces so that this file does not name them itself.
        for needle in ("METHOD" + ".md", ".." + "/shared", "/work" + "/shared"):
            if needle in text:
                hits.append(f"{rel}: {needle}")
    assert hits == []
