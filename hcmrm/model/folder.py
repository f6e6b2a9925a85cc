"""What a model folder may hold: regular files only, under a size cap. A link (to /etc/passwd), a device
(/dev/zero) or a pipe in it is refused before anything is copied, so none can reach the shared MLflow
artifacts or be shipped to every executor."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hcmrm.errors import ModelError

MAX_MODEL_BYTES = 16 * 2**30  # weights, config and tokenizer of the largest model the project trains, with room
KINDS = {stat.S_IFLNK: "a symbolic link", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
         stat.S_IFIFO: "a named pipe", stat.S_IFSOCK: "a socket"}
HINT = "copy the real file into the model folder (no links, devices or pipes) and rerun"


def model_files(folder: str | Path, max_bytes: int = MAX_MODEL_BYTES) -> list[Path]:
    """The files of the model folder `folder`, sorted; ModelError (exit 4) for anything in it that is not a
    regular file or a folder, or when the files add up to more than `max_bytes`. Links are never followed."""
    folder = Path(folder)
    files, total = [], 0
    for root, dirs, names in os.walk(folder):  # followlinks=False: a linked folder is in `dirs`, refused below
        for name in sorted(dirs + names):
            path = Path(root) / name
            info = path.lstat()
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                kind = KINDS.get(stat.S_IFMT(info.st_mode), "a special file")
                raise ModelError(f"model folder {folder}: {path.relative_to(folder)} is {kind}, not a regular file; "
                                 f"a model folder holds regular files only", hint=HINT)
            total += info.st_size
            if total > max_bytes:
                raise ModelError(f"model folder {folder} holds more than {max_bytes:,} bytes (the cap, "
                                 f"hcmrm.model.folder.MAX_MODEL_BYTES) by {path.relative_to(folder)}",
                                 hint="check that --path names a model folder, not a folder that holds one")
            files.append(path)
    return sorted(files)
