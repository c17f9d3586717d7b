"""t2v_turbo_core is a library of its own: none of its modules imports bench."""

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "t2v_turbo_core"


def test_no_core_module_names_bench_in_an_import():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(CORE.parent)}: {n}" for n in names if n == "bench" or n.startswith("bench.")]
    assert len(list(CORE.rglob("*.py"))) >= 15
    assert offenders == []


def test_importing_every_core_module_loads_no_bench_module():
    """Also catches an import made at run time (importlib, a lazy import inside a function is
    covered by the AST check above)."""
    code = (
        "import importlib, pkgutil, sys, t2v_turbo_core\n"
        "for m in pkgutil.walk_packages(t2v_turbo_core.__path__, 't2v_turbo_core.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n == 'bench' or n.startswith('bench.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=CORE.parent, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
