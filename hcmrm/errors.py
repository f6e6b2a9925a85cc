"""The failures a user can act on, each with its exit code, and the one place foreign errors are sorted into them.

A job raises InputDataError, ModelError or ConcurrentWriteError where it knows what went wrong; an
error from Spark, Delta, MLflow or safetensors is recognised by `classify` (by class name and
message, so nothing here imports them). The command line prints `classify(error).line()` as its one
line on stderr and exits with `.exit_code`; anything not recognised is an internal error (exit 1).
"""

from __future__ import annotations

import re
import signal

INTERNAL = 1  # a bug, or a failure nobody classified: the trace (--debug) says where
USAGE = 2  # argparse's own code for bad flags; UsageError uses it for checks made after parsing


class HcmrmError(Exception):
    """A failure with a class of its own: its exit code, and a hint of what to do about it."""

    exit_code = INTERNAL
    hint = "rerun with --debug for the full trace"

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def line(self) -> str:
        """The message and the hint, on one line."""
        text = " ".join(str(self).split())  # a multi-line message (a Java one) folded onto one line
        return f"{text.rstrip('.;')}; {self.hint}" if self.hint else text


class UsageError(HcmrmError):
    exit_code = USAGE
    hint = "see --help"


class InputDataError(HcmrmError):
    exit_code = 3
    hint = "check the input tables and --lake (HCMRM_LAKE); `hcmrm build-lake` writes the sample lake"


class ModelError(HcmrmError):
    exit_code = 4
    hint = "check --model-uri / --model-version against the MLflow registry, or register a good version"


class ConcurrentWriteError(HcmrmError):
    exit_code = 5
    hint = "another job wrote the same table at the same time; rerun when it has finished"


class ClaimLost(ConcurrentWriteError):
    """Another run of the same job holds the date (hcmrm.tracking.runs.claim_dates): stopped before any work.
    Not a commit conflict: retrying at once would lose again; the other run does the day."""

    hint = "rerun when it has finished"


class TrackingStoreError(HcmrmError):
    """The MLflow tracking store cannot be written: read-only, locked by another process, or unreachable."""

    exit_code = 6

    def __init__(self, message: str, hint: str | None = None, store: str = ""):
        super().__init__(message, hint)
        self.store = store  # the store's URI, when the raiser knows it (jobs.common fills it in otherwise)

    hint = "make the store writable (or wait for the process holding it), or point --tracking-uri at another; rerun"

    def line(self) -> str:
        where = f"the MLflow tracking store {self.store}" if self.store else "the MLflow tracking store"
        return f"{where} {super().line()}"


class DiskFullError(HcmrmError):
    exit_code = 7
    hint = ("free space on the disk named (else the lake's, Spark's local dirs (spark.local.dir) and the temp "
            "folder, TMPDIR), then rerun")


class Interrupted(BaseException):
    """SIGTERM or SIGINT, raised in the main thread so `finally` blocks run (a BaseException, like
    KeyboardInterrupt, so an `except Exception` that carries on past a bad item does not swallow it)."""

    def __init__(self, signum: int, at: float):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum
        self.at = at  # time.time() when the signal came

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process killed by that signal


# --- foreign errors ------------------------------------------------------------------------------

# Delta's optimistic-concurrency conflicts (io.delta.exceptions.* and their delta.exceptions twins).
DELTA_CONFLICTS = ("ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
                   "ConcurrentTransactionException", "ConcurrentWriteException", "MetadataChangedException",
                   "ProtocolChangedException", "DeltaConcurrentModificationException", "DELTA_CONCURRENT_")
# Spark / Delta error conditions that mean "no table (or no file) at that path".
MISSING_INPUT = ("[PATH_NOT_FOUND]", "[DELTA_MISSING_DELTA_TABLE]", "[DELTA_TABLE_NOT_FOUND]",
                 "[DELTA_PATH_DOES_NOT_EXIST]", "[TABLE_OR_VIEW_NOT_FOUND]")
CORRUPT_WEIGHTS = ("SafetensorError",)  # safetensors_rust.SafetensorError: a truncated or corrupt file
# The last `module.Class: message` line of a Python traceback held in a message (a Spark worker's).
_RAISED = re.compile(r"^(?:[\w.]+\.)?(\w+): (.+)$", re.MULTILINE)
_SQLSTATE = re.compile(r"\s*SQLSTATE: \w+\.?")


def classify(error: BaseException) -> HcmrmError:
    """`error` as one of the classes above (itself when it is one); an internal HcmrmError when unknown."""
    chain = _chain(error)
    for link in chain:
        if isinstance(link, HcmrmError):
            return link
    text = "\n".join(f"{_names(link)} {link}" for link in chain)
    raised = _worker_error(chain[0])
    if raised is not None:  # an hcmrm error raised in a Spark Python worker reaches the driver as text
        return raised
    for recognise in (_unreadable_file, _disk_full, _store_failure):
        found = recognise(chain, text)
        if found is not None:
            return found
    summary = _summary(chain[0])
    if any(name in text for name in DELTA_CONFLICTS):
        return ConcurrentWriteError(summary)
    if any(condition in text for condition in MISSING_INPUT):
        return InputDataError(summary)
    if any(_unknown_in_mlflow(link) for link in chain):
        return ModelError(summary)
    if any(name in text for name in CORRUPT_WEIGHTS):
        return ModelError(f"the model's weights cannot be read: {summary}")
    return HcmrmError(f"{type(chain[0]).__name__}: {summary}")


# A data file Spark could not read (corrupt, truncated, not Parquet): the file named in the condition's message.
_UNREADABLE_FILE = re.compile(r"\[(?:FAILED_READ_FILE|CANNOT_READ_FILE_FOOTER)[.\w]*\][^\n]*?"
                              r"((?:[a-z][\w+.-]*:)?/\S+?)\.?(?:\s|$)")
_CAUSED_BY = re.compile(r"Caused by: ([\w.$]+): ([^\n]+)")
# What an MLflow store says when it cannot be written, in the words of sqlite, SQLAlchemy or the HTTP client.
STORE_FAILURES = (("readonly database", "is read-only"), ("read-only file system", "is read-only"),
                  ("database is locked", "is locked by another process"),
                  ("unable to open database file", "cannot be opened (a missing folder or no permission)"),
                  ("Max retries exceeded", "is unreachable"))


def _unreadable_file(chain: list[BaseException], text: str) -> InputDataError | None:
    """A data file that cannot be read, named with its table and partition (from its path)."""
    found = _UNREADABLE_FILE.search(text)
    if found is None:
        return None
    path = found.group(1)
    parts = path.split("/")
    keyed = [i for i, part in enumerate(parts) if "=" in part]  # dt=2024-09-10
    table = parts[keyed[0] - 1] if keyed else parts[-2]
    partition = "/".join(parts[i] for i in keyed) or "unpartitioned"
    causes = _CAUSED_BY.findall(text)
    why = f" ({causes[-1][0].rsplit('.', 1)[-1]}: {causes[-1][1].strip()})" if causes else ""
    return InputDataError(
        f"table {table}, partition {partition}: data file {path} cannot be read{why}",
        hint="the file is corrupt or truncated: restore it, RESTORE the table to a version before it or rewrite the "
             "partition, then rerun")


def _disk_full(chain: list[BaseException], text: str) -> DiskFullError | None:
    if "No space left on device" not in text and "ENOSPC" not in text:
        return None
    where = next((link.filename for link in chain if isinstance(link, OSError) and link.filename), None)
    return DiskFullError(f"out of disk space{f' writing {where}' if where else ''}: No space left on device")


def _store_failure(chain: list[BaseException], text: str) -> TrackingStoreError | None:
    """The tracking store cannot be written (sqlite, SQLAlchemy and MLflow's REST client say it so)."""
    if not any(n in text for n in ("OperationalError", "sqlite3", "MlflowException")):  # not Spark's own gateway
        return None
    said = next((what for words, what in STORE_FAILURES if words in text), None)
    return None if said is None else TrackingStoreError(said)


def interruption(error: BaseException) -> BaseException | None:
    """The Interrupted (else KeyboardInterrupt) in `error`'s chain, if the command was stopped (a `finally`
    block that then failed, say on a Spark gateway already gone, does not hide the stop)."""
    stops = [link for link in _chain(error) if isinstance(link, (Interrupted, KeyboardInterrupt))]
    return next((stop for stop in stops if isinstance(stop, Interrupted)), stops[0] if stops else None)


def is_concurrent_write(error: BaseException) -> bool:
    """True for a Delta commit conflict: another writer won; the work can be retried."""
    return isinstance(classify(error), ConcurrentWriteError)


def _chain(error: BaseException) -> list[BaseException]:
    """`error`, then what caused it, and so on (each once)."""
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def _unknown_in_mlflow(error: BaseException) -> bool:
    """MLflow has no such registered model or version (RESOURCE_DOES_NOT_EXIST), or alias (said in words only)."""
    if "MlflowException" not in _names(error):
        return False
    return getattr(error, "error_code", None) == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(error)


def _names(error: BaseException) -> str:
    return " ".join(cls.__name__ for cls in type(error).__mro__)


def _worker_error(error: BaseException) -> HcmrmError | None:
    """The hcmrm error a Spark worker raised, rebuilt from the traceback text Spark hands the driver."""
    if "PythonException" not in _names(error):
        return None
    found = [m for m in _RAISED.finditer(str(error)) if m.group(1) in _CLASSES]
    return _CLASSES[found[-1].group(1)](found[-1].group(2).strip()) if found else None


def _summary(error: BaseException) -> str:
    """The first line that says something: a worker's last raised error rather than Spark's preamble."""
    text = str(error).strip() or type(error).__name__
    if "PythonException" in _names(error):
        found = list(_RAISED.finditer(text))
        if found:
            text = f"a Spark Python worker failed: {found[-1].group(1)}: {found[-1].group(2)}"
    return _SQLSTATE.sub("", text.splitlines()[0]).strip()


_CLASSES = {cls.__name__: cls for cls in (HcmrmError, UsageError, InputDataError, ModelError, ConcurrentWriteError,
                                          TrackingStoreError, DiskFullError)}
