"""Run one VBench dimension through VBench's Python API. Executed by the VBench env's python.

Standalone on purpose: the VBench env has neither `bench` nor the main env's packages.
`bench score vbench` calls it once per dimension, with `--output-dir` a staging folder
that the caller validates and moves into place.

Why the API and not VBench's `vbench evaluate` launcher: the launcher calls
`dist_init()`, which hard-codes the NCCL backend and `torch.cuda.set_device`, so it cannot
run on a CPU-only machine. `VBench(...).evaluate(...)` without a process group runs on any
device (vbench.distributed falls back to rank 0 / world size 1).

Only `vbench` (utils, distributed) and the requested `vbench.<dimension>` module are
imported; VBench imports each dimension's module on demand, so e.g. temporal_flickering
never touches detectron2, CLIP or pyiqa.

Not verified here (no weights on this machine): torch 2.14's `torch.load` defaults to
`weights_only=True`, while VBench was written for torch < 2.6. A checkpoint that pickles
more than tensors would then fail to load with an UnpicklingError in the log; setting
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 for the trusted files in $VBENCH_CACHE_DIR restores
VBench's original behaviour. We leave torch's default alone.

Exit codes: 0 done, 2 a prerequisite is missing (a file VBench would download, or a
package VBench does not install), 1 anything else (traceback on stderr).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

MISSING = 2
FETCHERS = {"wget", "curl", "git", "unzip"}
DETECTRON2_DIMENSIONS = {"object_class", "multiple_objects", "color", "spatial_relationship"}


REFUSAL = "refused: bench never downloads"


class DownloadBlocked(RuntimeError):
    pass


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--videos-dir", required=True)
    p.add_argument("--dimension", required=True)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--full-info", default=None, help="default: the json inside vbench")
    args = p.parse_args(argv)

    if args.dimension in DETECTRON2_DIMENSIONS and importlib.util.find_spec("detectron2") is None:
        print(
            f"BENCH-VBENCH-MISSING: {args.dimension} needs detectron2 (GRiT), which vbench does "
            "not install; install it into the VBench env (see VBench's README).",
            file=sys.stderr,
        )
        return MISSING

    _block_downloads()
    import vbench
    from vbench import VBench

    full_info = args.full_info or str(Path(vbench.__file__).with_name("VBench_full_info.json"))
    print(f"vbench {vbench.__file__} full_info={full_info} device={args.device}", flush=True)
    try:
        VBench(args.device, full_info, args.output_dir).evaluate(
            videos_path=args.videos_dir,
            name=args.name,
            dimension_list=[args.dimension],
            # local=True: CLIP weights come from $VBENCH_CACHE_DIR/clip_model, not openai-clip's cache.
            local=True,
            mode="vbench_standard",
        )
    except Exception as err:
        # VBench re-raises import-time errors of a dimension module as NotImplementedError,
        # so look for our refusal anywhere in the message chain.
        chain, e = [], err
        while e is not None:
            chain.append(str(e))
            e = e.__cause__ or e.__context__
        refusal = next((m for m in chain if REFUSAL in m), None)
        if refusal is None:
            raise
        print(f"BENCH-VBENCH-MISSING: {refusal}", file=sys.stderr)
        return MISSING
    return 0


if __name__ == "__main__":
    sys.exit(main())
