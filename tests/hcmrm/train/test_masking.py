"""Whole-word masking: jieba words are masked with all their tokens; labels only at masked tokens."""

import torch

from hcmrm.train.masking import IGNORE, whole_word_mask, word_ids
from hcmrm.model.tokenizer import Tokenizer


def test_word_ids_follow_jieba_words():
    tok = Tokenizer()
    text = "我爱北京天安门"
    ids, offsets = tok.tokenize([text], 32, offsets=True)
    words = word_ids(text, offsets[0])
    assert len(words) == len(ids[0]) == 7
    assert words == [0, 1, 2, 2, 3, 3, 3]  # 我 / 爱 / 北京 / 天安门


def test_whole_words_are_masked_together():
    tok = Tokenizer()
    text = "北京天安门广场的升旗仪式非常壮观"
    out = whole_word_mask([text] * 20, tok, max_len=64, probability=0.15, generator=torch.Generator().manual_seed(0))
    words = [-1] + word_ids(text, tok.tokenize([text], 64, offsets=True)[1][0]) + [-1]
    for row in range(20):
        chosen = out["mlm_labels"][row] != IGNORE
        assert 1 <= chosen.sum() <= 4  # ~15% of 16 tokens, whole words
        chosen_words = {words[i] for i in chosen.nonzero().view(-1).tolist()}
        for i, w in enumerate(words):
            assert bool(chosen[i]) == (w in chosen_words), "a word is masked whole or not at all"
        assert torch.equal(out["mlm_labels"][row][chosen], out["input_ids"][row][chosen])
        assert (out["mlm_input_ids"][row][~chosen] == out["input_ids"][row][~chosen]).all()
    assert (out["mlm_input_ids"] == tok.mask_id).any()
    assert (out["mlm_labels"][:, 0] == IGNORE).all()  # never [CLS]


def test_same_generator_same_masks_and_empty_text():
    tok = Tokenizer()
    a = whole_word_mask(["今天天气很好", ""], tok, 16, generator=torch.Generator().manual_seed(3))
    b = whole_word_mask(["今天天气很好", ""], tok, 16, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a["mlm_input_ids"], b["mlm_input_ids"])
    assert (a["mlm_labels"][1] == IGNORE).all()


def test_whole_word_masking_with_the_e5_tokenizer_never_draws_a_special():
    from hcmrm.model.config import preset

    tok = Tokenizer.from_config(preset("e5small"))
    out = whole_word_mask(["北京天安门广场的升旗仪式非常壮观"] * 50, tok, 64, probability=0.3,
                          generator=torch.Generator().manual_seed(1))
    chosen = out["mlm_labels"] != IGNORE
    assert chosen.any(dim=1).all() and (out["mlm_input_ids"] == tok.mask_id).any()
    replaced = chosen & (out["mlm_input_ids"] != tok.mask_id) & (out["mlm_input_ids"] != out["input_ids"])
    assert (out["mlm_input_ids"][replaced] >= tok.first_word_id).all()  # random pieces, never <s>, </s>, "▁"
    assert (out["input_ids"][:, 0] == tok.cls_id).all()
