"""Run one VBench step through VBench's Python API. Executed by the VBench env's python.

Standalone on purpose: the VBench env has neither `bench` nor the main env's packages.
`bench score vbench` calls it once per dimension (`--action evaluate`, the default), and
once for VBench's static filter (`--action static_filter`), with the output folder a
staging folder that the caller validates and moves into place.

Why the API and not VBench's `vbench evaluate` launcher: the launcher calls
`dist_init()`, which hard-codes the NCCL backend and `torch.cuda.set_device`, so it cannot
run on a CPU-only machine. `VBench(...).evaluate(...)` without a process group runs on any
device (vbench.distributed falls back to rank 0 / world size 1). The device is handed over
as a `torch.device`, as the launcher (vbench/launch/evaluate.py) does: GRiT's predictor
reads `device.type`, and motion_smoothness compares `device == 'cuda'`, which is False
for a `torch.device`, so official runs never take its VRAM-rescaling branch; a string
would crash the first and flip the second.

Only `vbench` (utils, distributed) and the requested `vbench.<dimension>` module are
imported; VBench imports each dimension's module on demand, so e.g. temporal_flickering
never touches detectron2, CLIP or pyiqa.

Checkpoints: torch >= 2.6 loads with `weights_only=True` unless told otherwise, while
vbench 0.1.5 was written for older torch and loads its files with bare `torch.load`; some
of those files pickle more than tensors (AMT-S keeps its training arguments beside the
state dict). The caller sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 for this process, which
restores the loading VBench was written for; the files are the user's own, from
$VBENCH_CACHE_DIR. The setting is printed here and recorded by the caller.

Exit codes: 0 done, 2 a prerequisite is missing (a file VBench would download, or a
package VBench does not install), 1 anything else (traceback on stderr).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

# Run as a script, this file's folder is sys.path[0]: its sibling modules (constants.py,
# env.py, weights.py, ...) must not shadow the VBench environment's own packages.
if sys.path and sys.path[0] and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

MISSING = 2
FETCHERS = {"wget", "curl", "git", "unzip"}
DETECTRON2_DIMENSIONS = {"object_class", "multiple_objects", "color", "spatial_relationship"}


REFUSAL = "refused: bench never downloads"


class DownloadBlocked(RuntimeError):
    """Something tried to download; exit 1 (bench score vbench runs this driver in the
    VBench environment, where `bench` is not importable: a plain RuntimeError)."""


def _block_downloads() -> None:
    """Make every fetch path VBench has fail loudly instead of reaching the network.

    `bench score vbench` checks the weight files first, so none of these should run; this
    is the second lock on the same door.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"

    def refuse(what: str):
        raise DownloadBlocked(f"VBench tried to download ({what}); {REFUSAL}")

    real_run, real_popen = subprocess.run, subprocess.Popen

    def _argv0(args) -> str:
        first = args[0] if isinstance(args, (list, tuple)) and args else str(args).split(" ")[0]
        return os.path.basename(str(first))

    def run(args, *a, **kw):
        if _argv0(args) in FETCHERS:
            refuse(" ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args))
        return real_run(args, *a, **kw)

    class Popen(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, args, *a, **kw):
            if _argv0(args) in FETCHERS:
                refuse(str(args))
            super().__init__(args, *a, **kw)

    subprocess.run = run
    subprocess.Popen = Popen
    urllib.request.urlretrieve = lambda url, *a, **kw: refuse(url)

    import torch.hub

    torch.hub.download_url_to_file = lambda url, *a, **kw: refuse(url)


def _missing_refusal(err: BaseException) -> str | None:
    """Our download refusal anywhere in an exception's chain (VBench wraps a dimension
    module's import-time error in another exception, so the refusal may sit deep in it)."""
    e: BaseException | None = err
    while e is not None:
        if REFUSAL in str(e):
            return str(e)
        e = e.__cause__ or e.__context__
    return None


def _evaluate(args, device) -> int:
    if args.dimension in DETECTRON2_DIMENSIONS and importlib.util.find_spec("detectron2") is None:
        print(
            f"BENCH-VBENCH-MISSING: {args.dimension} needs detectron2 (GRiT's code imports it; vbench "
            "does not install it) and the VBench env has none. `bench score vbench` installs the "
            "pure-Python detectron2 sources itself when GRiT dimensions are requested; see the "
            "docs/cli.md (bench score vbench) for the manual route.",
            file=sys.stderr,
        )
        return MISSING
    import vbench
    from vbench import VBench

    full_info = args.full_info or str(Path(vbench.__file__).with_name("VBench_full_info.json"))
    prompt_list: dict | list = []
    if args.mode == "custom_input" and args.prompt_file:
        # {file name inside --videos-dir: prompt}; VBench joins the names with videos_path.
        prompt_list = json.loads(Path(args.prompt_file).read_text(encoding="utf-8"))
    print(
        f"vbench {vbench.__file__} full_info={full_info} device={device!r} mode={args.mode} "
        f"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD={os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD')}",
        flush=True,
    )
    VBench(device, full_info, args.output_dir).evaluate(
        videos_path=args.videos_dir,
        name=args.name,
        prompt_list=prompt_list,
        dimension_list=[args.dimension],
        # local=True: CLIP weights come from $VBENCH_CACHE_DIR/clip_model, not openai-clip's cache.
        local=True,
        mode=args.mode,
    )
    return 0


def _static_filter(args, device) -> int:
    """VBench's own `vbench static_filter` (vbench/cli/static_filter.py), default options.

    That module fixes `DEVICE = 'cuda'` at import and loads RAFT without `map_location`;
    on another device both are pointed at the requested one (the computation is the same
    code), and the caller says so.
    """
    import torch
    from vbench.cli import static_filter as sf
    from vbench.utils import CACHE_DIR

    if device.type != "cuda":
        print(f"BENCH-VBENCH-NOTE: VBench's static_filter hard-codes CUDA; running its code on {device}",
              flush=True)
        sf.DEVICE = str(device)
        real_load = torch.load

        def load_on_device(f, *a, **kw):
            kw.setdefault("map_location", device)
            return real_load(f, *a, **kw)

        torch.load = load_on_device
    ns = argparse.Namespace(
        model=f"{CACHE_DIR}/raft_model/models/raft-things.pth",
        videos_path=args.videos_dir,
        result_path=args.output_dir,
        store_name="filtered_static_video.json",
        small=False,
        mixed_precision=False,
        alternate_corr=False,
        filter_scope="temporal_flickering",
    )
    print(f"static_filter device={device!r} videos={args.videos_dir} result_path={args.output_dir} "
          f"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD={os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD')}", flush=True)
    sf.static_filter(ns)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--action", choices=("evaluate", "static_filter"), default="evaluate")
    p.add_argument("--videos-dir", required=True)
    p.add_argument("--dimension", default=None)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--name", default=None)
    p.add_argument("--device", required=True)
    p.add_argument("--full-info", default=None, help="default: the json inside vbench")
    p.add_argument("--mode", choices=("vbench_standard", "custom_input"), default="vbench_standard")
    p.add_argument("--prompt-file", default=None, help="custom_input: json {video file name: prompt}")
    args = p.parse_args(argv)
    if args.action == "evaluate" and not (args.dimension and args.name):
        p.error("--action evaluate needs --dimension and --name")

    _block_downloads()
    import torch

    device = torch.device(args.device)
    try:
        if args.action == "static_filter":
            return _static_filter(args, device)
        return _evaluate(args, device)
    except Exception as err:
        refusal = _missing_refusal(err)
        if refusal is None:
            raise
        print(f"BENCH-VBENCH-MISSING: {refusal}", file=sys.stderr)
        return MISSING


if __name__ == "__main__":
    sys.exit(main())
