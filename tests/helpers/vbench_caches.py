"""Fixture pieces shared by the VBench adapter tests."""

from __future__ import annotations

from pathlib import Path

WEIGHT_CACHE_VARS = ("TRANSFORMERS_CACHE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")


def empty_weight_caches(tmp_path: Path, monkeypatch, unset: tuple[str, ...] = ()) -> Path:
    """Point every weight cache VBench and bench read at empty folders under `tmp_path`
    (and unset the variables that would name another); returns the VBench cache folder."""
    cache = tmp_path / "vbench-cache"
    cache.mkdir()
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for var in (*WEIGHT_CACHE_VARS, *unset):
        monkeypatch.delenv(var, raising=False)
    return cache
