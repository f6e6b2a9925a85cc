"""The library stays Spark-free: no module under hcmrm/ imports pyspark, directly or not."""

import ast
import subprocess
import sys
from pathlib import Path

import hcmrm

PACKAGE = Path(hcmrm.__file__).parent


def test_no_module_under_hcmrm_imports_pyspark():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("pyspark", "delta", "jobs", "udfs")]
    assert offenders == []


def test_importing_every_hcmrm_module_loads_no_pyspark():
    modules = [f"hcmrm.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"]
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "sys.exit(1 if 'pyspark' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
