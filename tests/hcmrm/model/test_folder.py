"""A model folder holds regular files only, under a size cap (hcmrm.model.folder): nothing can be smuggled."""

from __future__ import annotations

import os

import pytest

from hcmrm.errors import ModelError
from hcmrm.model.folder import model_files


def folder_with(tmp_path, **files):
    root = tmp_path / "model"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_regular_files_in_folders_are_listed_a_tokenizer_included(tmp_path):
    root = folder_with(tmp_path, **{"config.json": b"{}", "model.safetensors": b"w" * 10, "tokenizer.json": b"{}",
                                    "extra/vocab.txt": b"a"})
    assert [p.relative_to(root).as_posix() for p in model_files(root)] == [
        "config.json", "extra/vocab.txt", "model.safetensors", "tokenizer.json"]


@pytest.mark.parametrize("make, kind", [
    (lambda p: p.symlink_to("/etc/passwd"), "a symbolic link"),
    (lambda p: p.symlink_to(p.parent / "config.json"), "a symbolic link"),  # even to a file of the folder
    (lambda p: os.mkfifo(p), "a named pipe"),
])
def test_links_devices_and_pipes_are_refused_in_one_line(tmp_path, make, kind):
    root = folder_with(tmp_path, **{"config.json": b"{}"})
    make(root / "model.safetensors")
    with pytest.raises(ModelError) as error:
        model_files(root)
    assert error.value.line() == (f"model folder {root}: model.safetensors is {kind}, not a regular file; a model "
                                  f"folder holds regular files only; copy the real file into the model folder (no "
                                  f"links, devices or pipes) and rerun")


def test_a_linked_folder_and_a_device_are_refused(tmp_path):
    root = folder_with(tmp_path, **{"config.json": b"{}"})
    (root / "more").symlink_to(tmp_path)
    with pytest.raises(ModelError, match="more is a symbolic link"):
        model_files(root)
    (root / "more").unlink()
    (root / "zero").symlink_to("/dev/zero")
    with pytest.raises(ModelError, match="zero is a symbolic link"):
        model_files(root)


def test_a_folder_over_the_size_cap_is_refused(tmp_path):
    root = folder_with(tmp_path, **{"a.bin": b"x" * 600, "b.bin": b"x" * 600})
    assert len(model_files(root, max_bytes=1200)) == 2
    with pytest.raises(ModelError, match="holds more than 1,000 bytes .* by b.bin"):
        model_files(root, max_bytes=1000)
