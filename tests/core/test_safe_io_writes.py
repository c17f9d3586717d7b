"""The one atomic writer: the target is replaced in one step, and a failed write leaves no trace."""

import json
import os

import pytest

from t2v_turbo_core.safe_io import atomic_write, atomic_write_bytes, atomic_write_json, temp_path


def test_a_json_write_replaces_the_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "sub" / "x.json"
    atomic_write_json(target, {"b": 1, "a": [1.5]}, indent=2, sort_keys=True)
    assert target.read_text() == json.dumps({"a": [1.5], "b": 1}, indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and os.listdir(target.parent) == ["x.json"]
    with pytest.raises(ValueError):  # strict JSON by default: NaN is refused, the old file stays
        atomic_write_json(target, {"x": float("nan")})
    assert target.read_bytes() == b"new" and os.listdir(target.parent) == ["x.json"]


def test_a_writer_that_fails_halfway_keeps_the_old_file(tmp_path):
    target = tmp_path / "w.bin"
    target.write_bytes(b"old")

    def half(tmp):
        tmp.write_bytes(b"ha")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, half)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["w.bin"]


def test_temp_names_are_hidden_beside_the_target_and_unique_per_call(tmp_path):
    a, b = temp_path(tmp_path / "r.json"), temp_path(tmp_path / "r.json")
    assert a != b and a.parent == tmp_path and a.name.startswith(".r.json.") and a.name.endswith(".tmp")
