"""Loading weight files with errors that name the file and say what is wrong with it.

safetensors reports a cut file as "incomplete metadata, file not fully covered", naming no
file; a torch pickle cut short fails deep inside unpickling. `load_safetensors` and
`load_torch` check the file first (it exists, its header parses, its size is what the header
describes) and raise `WeightsFileError` naming the path.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any


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
