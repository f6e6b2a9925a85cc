"""The import rules of the layout: jobs -> udfs -> hcmrm, and inside hcmrm the model stands alone.

- nothing under hcmrm/ imports pyspark, delta, jobs or udfs (directly, or by importing a module that does);
- hcmrm/model/ imports neither mlflow, jieba, the training package nor the MLflow package, so a
  scoring worker loads the network without them;
- no function in hcmrm/, udfs/ or jobs/ is longer than MAX_FUNCTION_LINES (a reader sees it whole).
"""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import hcmrm
import jobs
import udfs

PACKAGE = Path(hcmrm.__file__).parent
MAX_FUNCTION_LINES = 80


def imported_modules(path: Path) -> list[str]:
    """The absolute module names `path` imports (at any depth of the file)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def offenders(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        for name in imported_modules(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(PACKAGE)}: {name}")
    return sorted(set(found))


def module_names(folder: Path) -> list[str]:
    return [
        ".".join(("hcmrm", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        for p in sorted(folder.rglob("*.py"))
    ]


def loaded_after_import(modules: list[str], watched: tuple[str, ...]) -> list[str]:
    """Import `modules` in a fresh interpreter; which of `watched` ended up in sys.modules."""
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += f"print(' '.join(w for w in {watched!r} if w in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_no_module_under_hcmrm_imports_spark_or_the_layers_above():
    assert offenders(PACKAGE, ("pyspark", "delta", "jobs", "udfs")) == []


def test_the_model_package_imports_no_training_mlflow_or_jieba():
    assert offenders(PACKAGE / "model", ("mlflow", "jieba", "hcmrm.train", "hcmrm.tracking")) == []


def test_importing_every_hcmrm_module_loads_no_pyspark():
    assert loaded_after_import(module_names(PACKAGE), ("pyspark",)) == []


def test_importing_the_model_package_and_the_engine_loads_no_mlflow_jieba_or_training():
    modules = module_names(PACKAGE / "model") + ["hcmrm.scoring"]
    assert loaded_after_import(modules, ("mlflow", "jieba", "hcmrm.train", "pyspark")) == []


def long_functions(folder: Path, limit: int) -> list[str]:
    """`file:line name (n lines)` for each function or method in `folder` spanning more than `limit` lines."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1  # from `def` to the last line, docstring included
                if lines > limit:
                    found.append(f"{folder.name}/{path.relative_to(folder)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_long_functions_finds_a_function_over_the_limit(tmp_path):
    body = "".join(f"        x = {i}\n" for i in range(5))
    (tmp_path / "m.py").write_text(f"def short():\n    pass\n\n\nclass C:\n    def long(self):\n{body}")
    assert long_functions(tmp_path, 5) == [f"{tmp_path.name}/m.py:6 long (6 lines)"]


def test_no_function_in_the_packages_is_longer_than_the_limit():
    folders = [PACKAGE, Path(udfs.__file__).parent, Path(jobs.__file__).parent]
    assert [f for folder in folders for f in long_functions(folder, MAX_FUNCTION_LINES)] == []


ROOT = PACKAGE.parent


def test_the_top_level_holds_the_layout_the_project_was_asked_for():
    assert {"jobs", "hcmrm", "udfs", "conf", "tests", "Makefile"} <= {p.name for p in ROOT.iterdir()}
    assert not (PACKAGE / "conf").exists()  # conf/ has one home in a checkout; only the wheel maps it into hcmrm


def test_pyproject_lists_every_python_package_and_maps_conf_into_hcmrm():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    inits = [p for top in ("hcmrm", "jobs", "udfs") for p in (ROOT / top).rglob("__init__.py")]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in inits}
    assert set(tool["packages"]) == found | {"hcmrm.conf"}
    assert tool["package-dir"] == {"hcmrm.conf": "conf"}
