"""The wheel works on its own: built from the sources, installed into a fresh venv, `hcmrm` runs outside the checkout.

Two routes put the project's dependencies into that venv:
- by default (seconds): the lock's packages already installed for this interpreter, seen through a folder of
  links to them that leaves out this project (editable install included) and every .pth hook; the project
  itself comes only from the wheel, and pip checks the wheel's dependencies against the lock it sees;
- HCMRM_TEST_FULL_INSTALL=1 (about 8 minutes and 7 GB here): the lock installed for real from a wheelhouse
  under ~/.cache/hcmrm/wheels (or $HCMRM_CACHE/wheels) that `pip wheel -r requirements.txt` fills once, the
  only step that needs the network.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hcmrm", "jobs", "udfs")
DIST = "hcmrm_labeler"  # the distribution's name as its .dist-info and editable-install files spell it
FULL_INSTALL = os.environ.get("HCMRM_TEST_FULL_INSTALL") == "1"
# What runs and tools leave in a checkout: never part of the sources the wheel is built from.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", ".cache", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
    "lake", "runs", "mlartifacts", "mlruns.db", "reports", "spark-warehouse", "metastore_db", "derby.log",
)  # fmt: skip


@dataclass(frozen=True)
class Installed:
    bin: Path  # the venv's scripts: python, hcmrm
    site: Path  # the venv's own site-packages


def run(cmd: list, cwd: Path) -> str:
    """stdout of `cmd`, run without this session's PYTHONPATH (it may name a checkout); a failure shows stderr."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        pytest.fail(f"{' '.join(map(str, cmd))} exited with {done.returncode}:\n{done.stderr[-4000:]}")
    return done.stdout


def lock_view(folder: Path) -> Path:
    """Links to this interpreter's installed packages, minus this project and the .pth files (not run from here)."""
    folder.mkdir()
    for site in {Path(sysconfig.get_path("purelib")), Path(sysconfig.get_path("platlib"))}:
        for entry in site.iterdir():
            own = entry.name in PACKAGES or entry.name.startswith((DIST, "__editable__"))  # + an editable finder
            if not own and entry.suffix != ".pth" and not (folder / entry.name).exists():
                (folder / entry.name).symlink_to(entry)
    return folder


def wheelhouse() -> Path:
    """Wheels of every package of the lock: built once per version of requirements.txt, then read offline."""
    from jobs.session import ivy_dir  # the cache root (HCMRM_CACHE or ~/.cache/hcmrm) that Delta's jars use

    folder = ivy_dir().parent / "wheels"
    lock = ROOT / "requirements.txt"
    stamp = folder / f".lock-{hashlib.sha256(lock.read_bytes()).hexdigest()[:16]}"
    if not stamp.exists():
        run([sys.executable, "-m", "pip", "wheel", "-q", "-r", lock, "-w", folder], cwd=ROOT)
        stamp.touch()
    return folder


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built from a copy of the sources: setuptools' build/ folder in a checkout would
    otherwise carry modules deleted since into the wheel. No build isolation: setuptools is in the lock's venv."""
    tmp = tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, tmp / "src", ignore=NOT_SOURCES)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", tmp / "dist", tmp / "src"], cwd=tmp)  # fmt: skip
    (built,) = (tmp / "dist").glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A fresh venv holding the wheel, by one of the two routes of the module docstring."""
    home = tmp_path_factory.mktemp("venv")
    env_dir = home / "venv"
    python = env_dir / "bin" / "python"
    venv.create(env_dir, symlinks=True, with_pip=FULL_INSTALL)
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=home).strip())
    if FULL_INSTALL:
        requirements = ["-r", ROOT / "requirements.txt", "--find-links", wheelhouse()]
    else:
        (site / "lock.pth").write_text(f"{lock_view(home / 'lock')}\n")
        requirements = []  # the lock is already visible; pip fails if it does not satisfy the wheel's dependencies
    run([python, "-m", "pip", "install", "-q", "--no-index", *requirements, wheel], cwd=home)
    yield Installed(env_dir / "bin", site)
    shutil.rmtree(env_dir, ignore_errors=True)  # a full install is about 7 GB


def checkout_commands() -> set[str]:
    """The COMMAND of every job module in the checkout, read from the source (no import)."""
    commands = set()
    for path in (ROOT / "jobs").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "COMMAND" for t in node.targets):
                commands.add(node.value.value)
    return commands


def files_under(folder: Path) -> set[str]:
    return {
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }


def test_the_installed_packages_are_the_wheels_not_the_checkout(installed, tmp_path):
    code = "import hcmrm, jobs, udfs; print('\\n'.join(m.__file__ for m in (hcmrm, jobs, udfs)))"
    files = run([installed.bin / "python", "-c", code], cwd=tmp_path).split()
    assert [Path(f).relative_to(installed.site).parts[0] for f in files] == list(PACKAGES)


def test_the_wheel_ships_every_file_of_the_packages(installed):
    missing = {p: sorted(files_under(ROOT / p) - files_under(installed.site / p)) for p in PACKAGES}
    assert missing == {p: [] for p in PACKAGES}


def test_hcmrm_help_lists_every_command_outside_the_checkout(installed, tmp_path):
    out = run([installed.bin / "hcmrm", "--help"], cwd=tmp_path)
    listed = set(re.findall(r"^ {4}([a-z][a-z-]*)", out, flags=re.MULTILINE))
    assert out.startswith("usage: hcmrm")
    assert listed == checkout_commands()


def test_hcmrm_params_counts_every_preset_outside_the_checkout(installed, tmp_path):
    from jobs.params import count_parameters

    out = run([installed.bin / "hcmrm", "params"], cwd=tmp_path)
    totals = {cells[0]: cells[-1] for cells in map(str.split, out.splitlines()) if cells}
    for name in ("tiny", "small", "base"):
        assert totals[name] == f"{count_parameters(name)['total']:,}"
