"""scripts/standalone_cluster.py without a JVM: stop() ends exactly the state's Spark pids, by pid."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "standalone_cluster.py"
spec = importlib.util.spec_from_file_location("standalone_cluster", SCRIPT)
cluster = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cluster)

SLEEP = "import time; time.sleep(120)"


def test_stop_ends_the_states_spark_daemons_and_spares_a_reused_pid():
    daemon = subprocess.Popen([sys.executable, "-c", SLEEP, "org.apache.spark.deploy.worker.Worker"])
    stranger = subprocess.Popen([sys.executable, "-c", SLEEP])  # as if the OS had reused a dead daemon's pid
    try:
        cluster.stop({"pids": [daemon.pid, stranger.pid]}, grace=10)
        assert daemon.wait(timeout=10) is not None
        assert stranger.poll() is None
    finally:
        for proc in (daemon, stranger):
            proc.kill()
            proc.wait()


def test_no_master_means_no_workers_and_ports_are_free():
    port = cluster.free_port()
    assert cluster.alive_workers(port) == 0  # nothing listens there


def test_url_and_stop_without_a_state_fail_in_one_line(tmp_path, capsys):
    assert cluster.main(["url", "--state", str(tmp_path / "none.json")]) == 1
    assert "no cluster state at" in capsys.readouterr().err


def test_url_prints_the_master_of_the_state(tmp_path, capsys):
    state = tmp_path / "state.json"
    state.write_text('{"master_url": "spark://127.0.0.1:7", "pids": []}')
    assert cluster.main(["url", "--state", str(state)]) == 0
    assert capsys.readouterr().out.strip() == "spark://127.0.0.1:7"
