"""Real weights from local files (nothing is downloaded): a Hugging Face BERT folder and a timm ViT checkpoint.

BERT (bert-base-chinese): embeddings and layers 0..text_layers-1 -> the text encoder, the next
fusion_layers layers -> the fusion encoder (their self-attention and MLP; the cross-attention has no BERT
counterpart and stays fresh), cls.predictions -> the MLM head when the checkpoint has it.
ViT (timm, e.g. vit_base_patch32_224): patch embedding, CLS token, position embedding (resampled if the image
size differs), the first `depth` blocks and the final norm; later blocks and the classifier are dropped.
Only tensors are read: safetensors, or torch.load(weights_only=True) for .bin/.pth files.
Each loader returns a LoadReport saying where every tensor went and what was left out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from hcmrm.model.network import HCMRM


@dataclass
class LoadReport:
    source: str  # the file or folder read
    loaded: dict[str, str] = field(default_factory=dict)  # model parameter -> source tensor it was copied from
    skipped: list[str] = field(default_factory=list)  # source tensors with no place in the model
    fresh: list[str] = field(default_factory=list)  # parameters of the loaded part that kept their initialisation

    def summary(self) -> str:
        return (f"{self.source}: {len(self.loaded)} tensors loaded, {len(self.skipped)} source tensors skipped,"
                f" {len(self.fresh)} parameters fresh")

    __str__ = summary


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file, a sharded safetensors index, or a torch.save'd state dict."""
    path = Path(path)
    if path.name.endswith(".index.json"):
        shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        state = {}
        for shard in shards:
            state.update(load_file(str(path.parent / shard)))
        return state
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only, never arbitrary pickles
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return state


def _copy(model: HCMRM, report: LoadReport, target: str, source: str, tensor: torch.Tensor) -> None:
    param = model.get_parameter(target)
    if param.shape != tensor.shape:
        raise ValueError(f"{source} has shape {tuple(tensor.shape)}, {target} needs {tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(tensor)
    report.loaded[target] = source


# --- BERT ----------------------------------------------------------------------------------------
_BERT_LAYER = {
    "attention.self.query": "attention.query",
    "attention.self.key": "attention.key",
    "attention.self.value": "attention.value",
    "attention.output.dense": "attention.out",
    "attention.output.LayerNorm": "attention.norm",
    "intermediate.dense": "mlp.fc",
    "output.dense": "mlp.proj",
    "output.LayerNorm": "mlp.norm",
}
_BERT_OTHER = {
    "embeddings.word_embeddings": "embeddings.word",
    "embeddings.position_embeddings": "embeddings.position",
    "embeddings.token_type_embeddings": "embeddings.token_type",
    "embeddings.LayerNorm": "embeddings.norm",
    "cls.predictions.transform.dense": "heads.mlm.dense",
    "cls.predictions.transform.LayerNorm": "heads.mlm.norm",
}


def bert_target(key: str, text_layers: int, fusion_layers: int) -> str | None:
    """The HCMRM parameter for a (normalised) BERT key, or None if it has no place in the model."""
    if key == "cls.predictions.bias":
        return "heads.mlm.bias"
    module, _, leaf = key.rpartition(".")
    if module in _BERT_OTHER:
        return f"{_BERT_OTHER[module]}.{leaf}"
    match = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)", module)
    if match and match.group(2) in _BERT_LAYER:
        i = int(match.group(1))
        if i < text_layers:
            return f"text_layers.{i}.{_BERT_LAYER[match.group(2)]}.{leaf}"
        if i < text_layers + fusion_layers:
            return f"fusion_layers.{i - text_layers}.{_BERT_LAYER[match.group(2)]}.{leaf}"
    return None  # pooler, NSP head, the decoder (tied to the word embeddings), layers beyond the split


def _normalise_bert_key(key: str) -> str:
    key = key.removeprefix("bert.")
    return re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key))


def _bert_weights_file(folder: Path) -> Path:
    for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {folder}")


def _check_bert_config(folder: Path, model: HCMRM) -> None:
    path = folder / "config.json"
    if not path.exists():
        return
    hf = json.loads(path.read_text())
    t = model.config.text
    wanted = {"hidden_size": t.hidden, "num_attention_heads": t.heads, "intermediate_size": t.intermediate,
              "vocab_size": t.vocab_size}
    wrong = {k: (hf.get(k), v) for k, v in wanted.items() if hf.get(k, v) != v}
    if wrong:
        raise ValueError(f"{path} does not fit the model config: " +
                         ", ".join(f"{k} is {a}, model has {b}" for k, (a, b) in wrong.items()))
    layers = hf.get("num_hidden_layers", t.text_layers + t.fusion_layers)
    if layers < t.text_layers + t.fusion_layers:
        raise ValueError(f"{path} has {layers} layers, the model needs text_layers + fusion_layers ="
                         f" {t.text_layers + t.fusion_layers}")
    if hf.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"{path} uses hidden_act {hf['hidden_act']!r}; the model's layers use exact GELU")


def load_bert_weights(model: HCMRM, hf_dir: str | Path) -> LoadReport:
    """Copy a Hugging Face BERT folder into the text and fusion encoders (and the MLM head)."""
    folder = Path(hf_dir)
    _check_bert_config(folder, model)
    source = _bert_weights_file(folder)
    state = read_state_dict(source)
    t = model.config.text
    report = LoadReport(source=str(source))
    for raw_key, tensor in state.items():
        key = _normalise_bert_key(raw_key)
        target = bert_target(key, t.text_layers, t.fusion_layers)
        if target is None:
            report.skipped.append(raw_key)
            continue
        if target == "embeddings.position.weight":
            if tensor.shape[0] < t.max_positions:
                raise ValueError(f"{raw_key} has {tensor.shape[0]} positions, the model needs {t.max_positions}")
            tensor = tensor[: t.max_positions]  # a shorter model keeps the first positions
        _copy(model, report, target, raw_key, tensor)
    if "embeddings.word.weight" not in report.loaded:
        raise ValueError(f"{source} has no BERT word embeddings: is it a BERT checkpoint?")
    parts = ("embeddings.", "text_layers.", "fusion_layers.", "heads.mlm.")
    report.fresh = [n for n, _ in model.named_parameters() if n.startswith(parts) and n not in report.loaded]
    return report


# --- ViT -----------------------------------------------------------------------------------------
def vit_target(key: str, depth: int) -> str | None:
    """The HCMRM parameter for a timm VisionTransformer key, or None if it is dropped."""
    match = re.fullmatch(r"blocks\.(\d+)\..+", key)
    if match:
        return f"vision.{key}" if int(match.group(1)) < depth else None
    if key in ("cls_token", "pos_embed") or key.startswith(("patch_embed.", "norm.")):
        return f"vision.{key}"
    return None  # classifier head, fc_norm, ...


def load_vit_weights(model: HCMRM, path: str | Path) -> LoadReport:
    """Copy a timm ViT checkpoint (safetensors or torch.save'd state dict) cut to the model's first blocks."""
    state = read_state_dict(path)
    state = {k.removeprefix("module.").removeprefix("model."): v for k, v in state.items()}
    if "patch_embed.proj.weight" not in state:
        raise ValueError(f"{path} has no patch_embed.proj.weight: is it a timm VisionTransformer checkpoint?")
    report = LoadReport(source=str(path))
    for key, tensor in state.items():
        target = vit_target(key, model.config.vision.depth)
        if target is None:
            report.skipped.append(key)
            continue
        if key == "pos_embed" and tensor.shape != model.vision.pos_embed.shape:
            tensor = _resample_pos_embed(tensor, model)
        _copy(model, report, target, key, tensor)
    report.fresh = [n for n, _ in model.named_parameters() if n.startswith("vision.") and n not in report.loaded]
    return report


def _resample_pos_embed(pos_embed: torch.Tensor, model: HCMRM) -> torch.Tensor:
    """A checkpoint trained at another image size: interpolate its patch grid (timm's helper)."""
    from timm.layers import resample_abs_pos_embed

    grid = model.config.vision.image_size // model.config.vision.patch_size
    return resample_abs_pos_embed(pos_embed, new_size=(grid, grid), num_prefix_tokens=1)
