"""The driver hands VBench what VBench's own launcher hands it, checked with a stand-in `vbench`.

vbench/launch/evaluate.py builds `VBench(torch.device("cuda"), ...)`. GRiT's predictor reads
`device.type` (a string has none: object_class, multiple_objects, color and
spatial_relationship crashed), and motion_smoothness's `self.device == 'cuda'` is False for a
`torch.device`, so official runs never take its VRAM-rescaling branch (a string took it).
The stand-in package records what the driver passed; it runs in this interpreter (the
driver needs only torch besides vbench).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.vbench import score as score_vbench

STAND_IN = '''
import json, os
class VBench:
    def __init__(self, device, full_info_dir, output_path):
        rec = {"type": type(device).__module__ + "." + type(device).__name__,
               "device_type": getattr(device, "type", None), "equals_cuda_string": device == "cuda",
               "full_info": full_info_dir}
        with open(os.environ["STAND_IN_RECORD"], "w") as f:
            json.dump(rec, f)
    def evaluate(self, **kw):
        with open(os.environ["STAND_IN_RECORD"] + ".evaluate", "w") as f:
            json.dump({k: v for k, v in kw.items()}, f)
'''


@pytest.mark.integration
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_vbench_gets_a_torch_device_as_from_its_launcher(tmp_path, device):
    pkg = tmp_path / "stand_in" / "vbench"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(STAND_IN)
    record = tmp_path / "record.json"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "stand_in"), "STAND_IN_RECORD": str(record)}
    full_info = tmp_path / "full_info.json"
    full_info.write_text("[]")
    proc = subprocess.run(
        [sys.executable, str(score_vbench.DRIVER), "--videos-dir", str(tmp_path), "--dimension", "color",
         "--name", "color", "--output-dir", str(tmp_path / "o"), "--device", device,
         "--full-info", str(full_info)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    # color needs detectron2: the stand-in world has none, so the driver says so (exit 2) ...
    assert proc.returncode == 2 and "needs detectron2" in proc.stderr
    (tmp_path / "stand_in" / "detectron2").mkdir()
    (tmp_path / "stand_in" / "detectron2" / "__init__.py").write_text("")
    proc = subprocess.run(proc.args, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rec = json.loads(record.read_text())
    assert rec["type"] == "torch.device"
    assert rec["device_type"] == device  # what GRiT reads
    assert rec["equals_cuda_string"] is False  # motion_smoothness: no VRAM rescaling, as officially
    assert rec["full_info"] == str(full_info)
    kw = json.loads(Path(str(record) + ".evaluate").read_text())
    assert kw["dimension_list"] == ["color"] and kw["local"] is True and kw["mode"] == "vbench_standard"
