"""Reading weight files with errors that name the file, and writing files atomically.

Writing: `atomic_write` and its byte / text / JSON forms write a temp file beside the target
(one name scheme, `.NAME.PID.RANDOM.tmp`: hidden, unique per process and call, so two
processes writing one folder never share a temp file) and `os.replace` it onto the target: a
reader, or a run killed mid-write, never sees half a file. On any failure the temp file is
removed and the old file, if any, is left as it was.

Reading:
safetensors reports a cut file as "incomplete metadata, file not fully covered", naming no
file; a torch pickle cut short fails deep inside unpickling. `load_safetensors` and
`load_torch` check the file first (it exists, its header parses, its size is what the header
describes) and raise `WeightsFileError` naming the path.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
from pathlib import Path
from typing import Any, Callable


def temp_path(path: str | Path) -> Path:
    """The temp name `atomic_write` writes `path` under: same folder (so os.replace is a rename)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def atomic_write(path: str | Path, write: Callable[[Path], object], *, mkdir: bool = True) -> Path:
    """`write(tmp)` writes the whole file at a temp path; it then replaces `path` in one step."""
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes, **kwargs: Any) -> Path:
    # open("xb"), not mkstemp: the file gets the usual umask permissions.
    def write(tmp: Path) -> None:
        with tmp.open("xb") as f:
            f.write(data)

    return atomic_write(path, write, **kwargs)


def atomic_write_text(path: str | Path, text: str, **kwargs: Any) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), **kwargs)


def atomic_write_json(path: str | Path, data: Any, *, mkdir: bool = True, **dumps: Any) -> Path:
    """`json.dumps(data, **dumps)` plus a newline. Strict JSON unless said otherwise: a NaN is a
    bug upstream, not something to write as a non-JSON token."""
    dumps.setdefault("allow_nan", False)
    return atomic_write_text(path, json.dumps(data, **dumps) + "\n", mkdir=mkdir)


class WeightsFileError(ValueError):
    """A weight or checkpoint file that is missing, truncated or not in the expected format."""


def check_safetensors(path: str | Path) -> None:
    """Raise WeightsFileError unless `path` is a complete safetensors file (header only, cheap)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"{path}: file not found")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise WeightsFileError(f"{path}: not a safetensors file ({size} bytes, too short for a header); "
                                   "the file is truncated or empty")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise WeightsFileError(f"{path}: truncated safetensors file ({size} bytes; its header alone "
                                   f"claims {n} bytes)")
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError):
            raise WeightsFileError(f"{path}: corrupt safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise WeightsFileError(f"{path}: corrupt safetensors file (its header is not a JSON object)")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise WeightsFileError(f"{path}: corrupt safetensors file (tensor {name!r} has no valid data_offsets)")
        end = max(end, offsets[1])
    expected = 8 + n + end
    if size != expected:
        what = "truncated" if size < expected else "corrupt"
        raise WeightsFileError(f"{path}: {what} safetensors file ({size} bytes; its header describes {expected})")


def load_safetensors(path: str | Path, device: str = "cpu") -> dict[str, Any]:
    """`safetensors.torch.load_file` after `check_safetensors`; errors name the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_safetensors(path)
    try:
        return load_file(str(path), device=device)
    except SafetensorError as err:
        raise WeightsFileError(f"{path}: unreadable safetensors file ({err})") from None


def load_torch(path: str | Path, **kwargs: Any) -> Any:
    """`torch.load(path, weights_only=True)` whose failures name the file."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"{path}: file not found")
    try:
        return torch.load(path, weights_only=True, **kwargs)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        raise WeightsFileError(f"{path}: truncated or corrupt torch file ({type(err).__name__}: {err})") from None
