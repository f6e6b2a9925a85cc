"""Save and load an HCMRM model as `model.safetensors` + `config.json`: tensors and JSON only, no pickle.

A model on pretrained weights (config.text.base, e.g. "e5-small") stores only the tensors that differ from
the pinned base file (hcmrm.model.e5_weights): the rest is read from the base at load. With low-rank adapters
(config.text.lora_rank) the adapters are stored and `load_model` merges them into the matrices. The folder also
holds a copy of the model's tokenizer file (tokenizer.json, or vocab.txt for WordPiece); a folder without one
(written before) uses the package's copy of the vocabulary its config names.
Files are written under temporary names and renamed into place, so a crash never leaves a half-written
checkpoint that loads.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from hcmrm.config import from_dict, override, to_dict
from hcmrm.errors import ModelError
from hcmrm.model.config import HCMRMConfig
from hcmrm.model.layers import merge_lora
from hcmrm.model.network import HCMRM
from hcmrm.model.tokenizer import WORDPIECE, Tokenizer, tokenizer_file

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT = "hcmrm-checkpoint/1"


def tokenizer_copy_name(config: HCMRMConfig) -> str:
    return "vocab.txt" if config.text.tokenizer == WORDPIECE else "tokenizer.json"


def base_tensors(config: HCMRMConfig) -> dict[str, torch.Tensor]:
    """The tensors a model of this config takes from its pretrained base ({} without one)."""
    if not config.text.base:
        return {}
    from hcmrm.model.e5_weights import base_state

    return base_state(config, Tokenizer.from_config(config).pieces)


def _base_pin(config: HCMRMConfig) -> dict:
    """The base file the saved tensors are a difference to, named by its sha256 ({} without a base)."""
    if not config.text.base:
        return {}
    from hcmrm.model.e5_weights import DATA_FILE, DISTRIBUTION, SHA256, VERSION

    return {"base": {"package": f"{DISTRIBUTION}=={VERSION}", "file": DATA_FILE, "sha256": SHA256}}


def new_model(config: HCMRMConfig) -> HCMRM:
    """HCMRM(config), its pretrained part (if config.text.base) read from the base file, the rest initialised."""
    model = HCMRM(config)
    base = base_tensors(config)
    if base:
        model.load_state_dict(base, strict=False)
    return model


def save_model(model: HCMRM, directory: str | Path, half: bool = False) -> None:
    """Write the model's folder; half=True stores the saved tensors as fp16 (for shipping: evaluate the result)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    base = base_tensors(model.config)
    state = {}
    for name, t in model.state_dict().items():
        t = t.detach().contiguous().cpu()
        if name in base and torch.equal(t, base[name]):
            continue  # unchanged from the pinned base file: read from it at load
        state[name] = t.half() if half and t.is_floating_point() else t
    meta = {"format": FORMAT, "config": to_dict(model.config), **_base_pin(model.config)}
    tmp_weights, tmp_config = directory / f".{WEIGHTS}.tmp", directory / f".{CONFIG}.tmp"
    tokenizer, tmp_tokenizer = tokenizer_copy_name(model.config), directory / ".tokenizer.tmp"
    save_file(state, str(tmp_weights), metadata={"format": FORMAT})
    tmp_config.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    shutil.copyfile(tokenizer_file(model.config.text.tokenizer), tmp_tokenizer)
    os.replace(tmp_tokenizer, directory / tokenizer)
    os.replace(tmp_weights, directory / WEIGHTS)
    os.replace(tmp_config, directory / CONFIG)


def load_config_json(directory: str | Path) -> HCMRMConfig:
    path = Path(directory) / CONFIG
    if not path.exists():
        raise ModelError(f"no {CONFIG} in {directory}: not an HCMRM checkpoint")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ModelError(f"{path} has format {found!r}, expected {FORMAT!r}")
    try:
        config = from_dict(HCMRMConfig, meta.get("config") or {}, str(path))
    except ValueError as err:  # ConfigError: an unknown key, a wrong type
        raise ModelError(f"{path} does not describe an HCMRM model: {err}") from err
    if "base" in meta and meta["base"] != _base_pin(config).get("base"):  # no key: saved before pinning
        raise ModelError(f"{path} was saved over the base {meta.get('base')}, this install has {_base_pin(config)}")
    _check_tokenizer(Path(directory), config)
    return config


def _check_tokenizer(directory: Path, config: HCMRMConfig) -> None:
    """A folder's tokenizer copy must be the vocabulary its config names (the ids index its embeddings)."""
    copy = directory / tokenizer_copy_name(config)
    if copy.exists() and copy.read_bytes() != tokenizer_file(config.text.tokenizer).read_bytes():
        raise ModelError(f"{copy} is not the {config.text.tokenizer!r} vocabulary its config names")


def read_state(directory: str | Path, config: HCMRMConfig, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Every tensor of the saved model: the folder's, over its base's (adapters unmerged), in fp32 where the
    model is fp32."""
    weights = Path(directory) / WEIGHTS
    if not weights.exists():
        raise ModelError(f"no {WEIGHTS} in {directory}")
    try:
        saved = load_file(str(weights), device=str(device))
    except Exception as err:  # safetensors' SafetensorError (a bad header), OSError
        raise ModelError(f"{weights} cannot be read, the file is corrupt or truncated: {err}") from err
    state = {k: v.to(device) for k, v in base_tensors(config).items()}
    state.update({k: v.float() if v.dtype == torch.float16 else v for k, v in saved.items()})
    return state


def load_model(directory: str | Path, map_location="cpu") -> HCMRM:
    """The model saved by save_model, in eval mode, on map_location.

    Built on the meta device and given the file's tensors as its parameters: no random initialisation to
    overwrite and one copy of the weights at any time (base: a load peak of ~0.65 GB instead of ~1.25 GB,
    1 s instead of 5; benchmarks/worker_memory.py)."""
    config = load_config_json(directory)
    with torch.device("meta"):
        model = HCMRM(config)
    state = read_state(directory, config, map_location)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as err:  # a tensor of another shape than the config says (a hidden-size mismatch)
        detail = " ".join(str(err).split())[:300]
        raise ModelError(f"{Path(directory) / WEIGHTS} does not match its config ({Path(directory) / CONFIG}): "
                         f"{detail}") from err
    if missing or unexpected:
        raise ModelError(f"{Path(directory) / WEIGHTS} does not match its config: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    if merge_lora(model):  # inference runs plain matrices: the adapters cost nothing at scoring time
        model.config = override(config, {"text": {"lora_rank": 0}})
    return model.to(map_location).eval()
