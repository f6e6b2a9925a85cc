"""A local Spark standalone cluster for tests: one master and N workers bound to 127.0.0.1.

    python scripts/standalone_cluster.py start [--state .cluster/state.json] [--workers 2]
    python scripts/standalone_cluster.py url   [--state .cluster/state.json]    # the running one's master URL
    python scripts/standalone_cluster.py stop  [--state .cluster/state.json]

`start` launches the JVMs with pyspark's bin/spark-class (pip's pyspark has no sbin/start-*.sh), on
free ports, waits until every worker is registered with the master (its JSON page), writes the pids,
ports and master URL to the state file and prints the master URL. `stop` ends exactly the pids the
state file names, nothing found by name. Importable: `start(state_file)` / `stop(state)`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyspark

HOST = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
DEFAULT_STATE = Path(".cluster") / "state.json"


def free_port() -> int:
    """A port nothing listens on now (the OS picks it; a tiny race with other processes remains)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def spark_env(repo: Path, isolated: bool = False) -> dict:
    """The JVMs' environment: bound to 127.0.0.1, small daemon heaps, this repo importable by executors;
    `isolated`: neither the repo nor this venv is passed on, as on a real cluster (the job then ships its
    environment, `make dist`'s archive)."""
    env = dict(os.environ, SPARK_LOCAL_IP=HOST, SPARK_DAEMON_MEMORY="256m", SPARK_NO_DAEMONIZE="1")
    if isolated:
        for name in ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV"):
            env.pop(name, None)
        return env
    env["PYSPARK_PYTHON"] = env.get("PYSPARK_PYTHON") or sys.executable
    # Executors inherit the worker's environment: their Python workers import jobs/, udfs/ from here.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo), env.get("PYTHONPATH", "")) if p)
    return env


def launch(args: list[str], log: Path, env: dict) -> int:
    """Start one JVM in its own session (a Ctrl-C of the caller does not reach it); its pid."""
    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(spark_class), *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    return proc.pid  # spark-class execs java, so this is the JVM's pid


def alive_workers(webui_port: int) -> int:
    """Workers the master lists as ALIVE, 0 while its web UI is not up yet."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{webui_port}/json", timeout=2) as r:
            page = json.load(r)
    except (OSError, ValueError):
        return 0
    return sum(w.get("state") == "ALIVE" for w in page.get("workers", []))


def start(state_file: Path, workers: int = 2, memory: str = "1g", timeout: float = 180.0,
          isolated: bool = False, cores: int = 1, gpu: str | None = None) -> dict:
    """Start the master and `workers` workers (`cores` and `memory` each); the state, also in `state_file`
    (logs and work folders beside it). `gpu`: each worker offers one GPU of that address, found by a
    discovery script that only reports it (scheduling is tested without one; nothing uses CUDA)."""
    state_file = Path(state_file)
    state_dir = state_file.parent
    state_dir.mkdir(parents=True, exist_ok=True)
    env = spark_env(Path(__file__).resolve().parents[1], isolated)
    port, webui = free_port(), free_port()
    master_url = f"spark://{HOST}:{port}"
    state = {"master_url": master_url, "webui_port": webui, "pids": [], "dir": str(state_dir)}
    state["pids"].append(launch([MASTER_CLASS, "--host", HOST, "--port", str(port), "--webui-port", str(webui)],
                                state_dir / "master.log", env))
    if gpu is not None:
        env = dict(env, SPARK_WORKER_OPTS=gpu_options(state_dir, gpu))
    for i in range(workers):
        work = state_dir / f"worker-{i}"
        work.mkdir(exist_ok=True)
        args = [WORKER_CLASS, "--host", HOST, "--webui-port", str(free_port()), "--cores", str(cores),
                "--memory", memory, "--work-dir", str(work), master_url]
        state["pids"].append(launch(args, state_dir / f"worker-{i}.log", env))
    state_file.write_text(json.dumps(state, indent=1))  # written first: stop() works if we fail
    deadline = time.monotonic() + timeout
    while alive_workers(webui) < workers:
        if time.monotonic() > deadline or not all(_running(p) for p in state["pids"]):
            stop(state)
            raise RuntimeError(f"standalone cluster not up in {timeout:.0f}s (logs in {state_dir})")
        time.sleep(1)
    return state


def gpu_options(state_dir: Path, address: str) -> str:
    """The worker JVM options that make it offer one GPU at `address`, via a discovery script in `state_dir`
    that prints what Spark's getGpusResources.sh prints on a one-GPU host."""
    script = state_dir / "fake_gpu_discovery.sh"
    script.write_text(f"#!/bin/sh\necho '{{\"name\": \"gpu\", \"addresses\": [\"{address}\"]}}'\n")
    script.chmod(0o755)
    return f"-Dspark.worker.resource.gpu.amount=1 -Dspark.worker.resource.gpu.discoveryScript={script}"


def _running(pid: int) -> bool:
    """Whether `pid` is still one of our Spark daemons (a reused pid of another program is not)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0]:  # reaps our own child if it exited
            return False
    except ChildProcessError:  # not our child: stop() called from another process
        pass
    if not Path("/proc").is_dir():  # no procfs (macOS): only whether the pid exists
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # A zombie has exited; an empty cmdline is a process between fork and exec (spark-class execs java).
    return state != "Z" and (not cmdline or b"org.apache.spark.deploy." in cmdline)


def stop(state: dict, grace: float = 20.0) -> None:
    """End the state's processes by pid: SIGTERM, then SIGKILL for any still running after `grace` s."""
    pids = [p for p in reversed(state["pids"]) if _running(p)]  # workers first, then the master
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _running(p)]
        time.sleep(0.2)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # it may exit between the check and the kill
            os.kill(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["start", "url", "stop"])
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help=f"state file (default {DEFAULT_STATE})")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory", default="1g", help="memory each worker offers its executors")
    parser.add_argument("--cores", type=int, default=1, help="cores each worker offers its executors")
    parser.add_argument("--fake-gpu", metavar="ADDRESS", help="each worker offers one (fake) GPU at ADDRESS")
    parser.add_argument("--isolated", action="store_true",
                        help="executors see neither this checkout nor its venv (submit with HCMRM_ENV_ARCHIVE)")
    args = parser.parse_args(argv)
    if args.action == "start":
        print(start(args.state, args.workers, args.memory, isolated=args.isolated, cores=args.cores,
                    gpu=args.fake_gpu)["master_url"])
        return 0
    if not args.state.is_file():
        print(f"no cluster state at {args.state}: start one with `{Path(__file__).name} start`", file=sys.stderr)
        return 1
    state = json.loads(args.state.read_text())
    if args.action == "url":
        print(state["master_url"])
        return 0
    stop(state)
    args.state.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
