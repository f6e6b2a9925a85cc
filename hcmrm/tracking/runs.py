"""A command's MLflow runs and temporary folders: closed and removed however the command ends.

    with CommandScope():                       # the CLI opens one around each command
        folder = temp_dir("hcmrm-model-")       # removed when the command ends, whatever the ending
        run_id = client.create_run(...).info.run_id
        adopt_run(client, run_id)               # marked KILLED if the command is stopped

- Stopped by SIGTERM or SIGINT (hcmrm.errors.Interrupted, KeyboardInterrupt): the adopted runs still
  RUNNING, or closed FAILED by the stop itself, are marked KILLED; the temporary folders are removed.
- Killed with SIGKILL (nothing runs): the run stays RUNNING with its host, pid and temporary folders
  in tags; the next run of the same job (and date) on that host sees the pid gone, closes the run as
  KILLED and removes those folders.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from hcmrm.errors import ClaimLost, interruption

JOB_TAG = "hcmrm.job"  # the command (score, backfill) or training run name (pretrain, finetune-hsoftmax)
DATE_TAG = "hcmrm.date"  # the day(s) a run is for: yyyy-mm-dd, comma-separated when several (claim_dates)
HOST_TAG = "hcmrm.host"
PID_TAG = "hcmrm.pid"
TEMP_TAG = "hcmrm.temp_dirs"  # the command's temporary folders, os.pathsep-separated
CLOSED_BY_TAG = "hcmrm.closed_by"  # on a stale run: the run that closed it
MAX_TAG_CHARS = 5000  # an MLflow tag value's limit (8000 in MLflow 2.x; 5000 in older stores)
TEMP_PREFIX = "hcmrm-"  # only folders named so are ever removed on a tag's word

log = logging.getLogger(__name__)

_current: "CommandScope | None" = None


class CommandScope:
    """What one command must undo when it ends: folders to remove, runs to mark KILLED if it is stopped."""

    def __init__(self):
        self.paths: list[Path] = []
        self.runs: list[tuple[object, str]] = []  # (MlflowClient, run id)
        self.killed: list[str] = []  # the runs marked KILLED when the command was stopped

    def __enter__(self) -> "CommandScope":
        global _current
        self._outer, _current = _current, self
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        global _current
        _current = self._outer
        stop = interruption(exc) if exc is not None else None
        if stop is not None:
            self.mark_killed(getattr(stop, "at", time.time()))
        for path in self.paths:
            shutil.rmtree(path, ignore_errors=True)

    def add_path(self, path: Path) -> None:
        self.paths.append(path)
        for client, run_id in self.runs:
            _tag_paths(client, run_id, self.paths)

    def add_run(self, client, run_id: str) -> None:
        self.runs.append((client, run_id))
        _tag_paths(client, run_id, self.paths)

    def mark_killed(self, since: float) -> None:
        """KILLED for each run still RUNNING, or closed FAILED at or after `since` (by the stop unwinding)."""
        for client, run_id in self.runs:
            try:
                info = client.get_run(run_id).info
                failed_by_stop = info.status == "FAILED" and (info.end_time or 0) >= int(since * 1000)  # ms
                if info.status == "RUNNING" or failed_by_stop:
                    client.set_terminated(run_id, "KILLED")
                    self.killed.append(run_id)
            except Exception as err:  # the tracking store may be what failed; the next run closes it then
                log.warning("could not mark MLflow run %s KILLED: %s", run_id, err)


def temp_dir(prefix: str = TEMP_PREFIX) -> Path:
    """A new temporary folder; inside a CommandScope it is removed when the command ends."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if _current is not None:
        _current.add_path(path)
    return path


def adopt_run(client, run_id: str) -> list[str]:
    """Tag the run with this process, close the stale runs of its job (and date), and, inside a
    CommandScope, have it marked KILLED if the command is stopped. Returns the ids of the runs it closed."""
    client.set_tag(run_id, HOST_TAG, socket.gethostname())
    client.set_tag(run_id, PID_TAG, str(os.getpid()))
    if _current is not None:
        _current.add_run(client, run_id)
    return close_stale_runs(client, client.get_run(run_id))


def close_stale_runs(client, run) -> list[str]:
    """Close as KILLED the runs of `run`'s experiment, job and date left RUNNING by a process of this
    host that no longer exists, and remove their temporary folders."""
    tags = run.data.tags
    if JOB_TAG not in tags:
        return []
    conditions = [f"tags.`{JOB_TAG}` = '{_quote(tags[JOB_TAG])}'", "attributes.status = 'RUNNING'"]
    if DATE_TAG in tags:
        conditions.append(f"tags.`{DATE_TAG}` = '{_quote(tags[DATE_TAG])}'")
    closed = []
    for other in client.search_runs([run.info.experiment_id], " and ".join(conditions), max_results=1000):
        if other.info.run_id == run.info.run_id or not _process_gone(other.data.tags):
            continue
        client.set_tag(other.info.run_id, CLOSED_BY_TAG, run.info.run_id)
        client.set_terminated(other.info.run_id, "KILLED")
        for path in other.data.tags.get(TEMP_TAG, "").split(os.pathsep):
            if Path(path).name.startswith(TEMP_PREFIX):
                shutil.rmtree(path, ignore_errors=True)
        closed.append(other.info.run_id)
        log.warning("MLflow run %s (%s) was left RUNNING by process %s, which is gone: closed as KILLED",
                    other.info.run_id, tags[JOB_TAG], other.data.tags.get(PID_TAG))
    return closed


def close_run(client, run_id: str, status: str, error: str = "") -> None:
    """End the run as `status`, with its `error` tag; a store that fails here is logged, not raised, so the
    error that ended the run is the one the command reports (and the next run's claim closes it)."""
    try:
        if error:
            client.set_tag(run_id, "error", error[:4000])
        client.set_terminated(run_id, status)
    except Exception as err:
        log.warning("MLflow run %s not closed as %s: %s", run_id, status, " ".join(str(err).split())[:300])


def date_tag(dates) -> str:
    """The DATE_TAG value of a run for `dates`: sorted and comma-separated, or `first..last` when the list
    would not fit in an MLflow tag (a pseudo-queries --all-dates run over years of input)."""
    days = sorted(set(dates))
    listed = ",".join(days)
    return listed if len(listed) <= MAX_TAG_CHARS else f"{days[0]}..{days[-1]}"


def claim_dates(client, run, claim_hours: float, what: str = "", committed=None) -> None:
    """Fail fast (ClaimLost, exit 5) when an earlier run of `run`'s job holds any of its dates.

    `run` (this command's, from client.get_run) was created RUNNING with its JOB_TAG and DATE_TAG
    (date_tag), before this check and before any work. Of the RUNNING runs of the job, started within
    `claim_hours` and sharing a date with it, the first started (then the lowest run id) goes on and
    the others stop here: two runs that start together both see each other, so exactly one goes on
    (given the hosts' clocks agree). A run whose process is gone from this host does not count.
    `what` ("before reading anything") ends the message. `committed(run_ids)`, when given, names the runs
    that committed their work although their MLflow run stayed RUNNING (the store failed after the commit):
    they hold nothing, and are closed FINISHED here.
    """
    tags = run.data.tags
    since = int((time.time() - claim_hours * 3600) * 1000)
    running = client.search_runs(
        [run.info.experiment_id], f"tags.`{JOB_TAG}` = '{_quote(tags[JOB_TAG])}' and attributes.status = 'RUNNING' "
                                  f"and attributes.start_time > {since}", max_results=1000)
    rivals = [r for r in running if r.info.run_id == run.info.run_id or (
        _shared(tags[DATE_TAG], r.data.tags.get(DATE_TAG, "")) and not _process_gone(r.data.tags))]
    done = committed([r.info.run_id for r in rivals if r.info.run_id != run.info.run_id]) if committed else set()
    for other in done:
        client.set_tag(other, CLOSED_BY_TAG, run.info.run_id)
        client.set_terminated(other, "FINISHED")
        log.warning("MLflow run %s committed its work but was left RUNNING: closed as FINISHED", other)
    rivals = [r for r in rivals if r.info.run_id not in done]
    first = min(rivals, key=lambda r: (r.info.start_time, r.info.run_id), default=run)
    if first.info.run_id != run.info.run_id:
        held = ", ".join(_shared(tags[DATE_TAG], first.data.tags[DATE_TAG]))
        raise ClaimLost(
            f"another {tags[JOB_TAG]} of {held} is running: MLflow run {first.info.run_id} (host "
            f"{first.data.tags.get(HOST_TAG)}, pid {first.data.tags.get(PID_TAG)}); this run stopped {what}".rstrip(),
            hint=f"rerun when it has finished (a run dead on another host stops counting after {claim_hours:g} h, "
                 "or mark it KILLED in MLflow)")


def _shared(a: str, b: str) -> list[str]:
    """The dates two DATE_TAG values have in common (`lo..hi` when both are ranges)."""
    span_a, span_b = (tuple(t.split("..")) if ".." in t else None for t in (a, b))
    if span_a is None and span_b is None:
        return sorted(set(a.split(",")) & set(b.split(",")) - {""})
    if span_a and span_b:
        lo, hi = max(span_a[0], span_b[0]), min(span_a[1], span_b[1])
        return [f"{lo}..{hi}"] if lo <= hi else []
    (lo, hi), listed = (span_a, b) if span_a else (span_b, a)
    return sorted(d for d in listed.split(",") if d and lo <= d <= hi)  # yyyy-mm-dd sorts as dates do


def _process_gone(tags: dict) -> bool:
    """True when the run's process was on this host and no longer exists (another host's: unknowable)."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return False
    try:
        os.kill(int(tags[PID_TAG]), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process has that pid
        return False
    return False


def _tag_paths(client, run_id: str, paths: list[Path]) -> None:
    if paths:
        client.set_tag(run_id, TEMP_TAG, os.pathsep.join(str(p) for p in paths))


def _quote(value: str) -> str:
    return value.replace("'", "\\'")
