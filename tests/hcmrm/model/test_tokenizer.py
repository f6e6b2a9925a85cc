"""The shipped bert-base-chinese vocabulary and `[CLS] query [SEP] text [SEP]` packing with per-segment budgets."""

from hcmrm.model.config import preset
from hcmrm.model.tokenizer import Tokenizer


def test_known_encoding():
    tok = Tokenizer()
    assert tok.vocab_size == 21128
    assert tok.encode_texts(["我爱中国"], max_len=32)["input_ids"].tolist() == [[101, 2769, 4263, 704, 1744, 102]]


def test_pairs_pack_query_then_text_with_segment_ids():
    tok = Tokenizer(max_query_len=8, max_text_len=16)
    enc = tok.encode_pairs(["我爱"], ["中国"])
    assert enc["input_ids"].tolist() == [[101, 2769, 4263, 102, 704, 1744, 102]]
    assert enc["token_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 1]]
    assert enc["attention_mask"].tolist() == [[1] * 7]


def test_each_segment_keeps_its_own_budget():
    tok = Tokenizer(max_query_len=3, max_text_len=5)
    enc = tok.encode_pairs(["一二三四五六", "好"], ["甲乙丙丁戊己庚辛", "人"])
    ids = enc["input_ids"]
    assert ids.shape == (2, 3 + 5 + 3)  # padded to the longest row
    assert enc["token_type_ids"][0].tolist() == [0] * 5 + [1] * 6
    assert tok.decode(ids[0]).replace(" ", "") == "一二三甲乙丙丁戊"
    assert enc["attention_mask"][1].tolist() == [1] * 5 + [0] * 6
    assert ids[1, 5:].eq(tok.pad_id).all()


def test_from_config_uses_the_config_budgets_and_tolerates_nulls():
    config = preset("tiny")
    tok = Tokenizer.from_config(config)
    enc = tok.encode_pairs(["查询" * 50], [None])
    assert enc["input_ids"].shape[1] == config.max_query_len + 3


def test_query_and_text_segments_are_the_two_halves_of_a_pair():
    """The cached text attention encodes `[CLS] q [SEP]` per pair and `t [SEP]` per ad: together, the pair."""
    tok = Tokenizer(max_query_len=3, max_text_len=5)
    queries, texts = ["一二三四五六", "好"], ["甲乙丙丁戊己庚辛", "人"]
    pairs = tok.encode_pairs(queries, texts)
    q, t = tok.encode_texts(queries, tok.max_query_len), tok.encode_text_segments(texts)

    def real(enc, key, i):
        return enc[key][i][enc["attention_mask"][i].bool()].tolist()

    for i in range(2):
        for key in ("input_ids", "token_type_ids"):
            assert real(q, key, i) + real(t, key, i) == real(pairs, key, i)
    assert t["token_type_ids"][0].tolist() == [1] * 6


def test_each_distinct_text_is_tokenised_once(monkeypatch):
    """Scoring packs every query of an ad with the same text, and a popular query with many ads: each distinct
    string goes through the tokenizer once, and the rows are those of the pairs encoded one by one."""
    tok = Tokenizer(max_query_len=4, max_text_len=6)
    queries, texts = ["红色", "长裙子", "红色", "拍照"], ["红色 连衣裙", "红色 连衣裙", "手机 新款", "红色 连衣裙"]
    one_by_one = [tok.encode_pairs([q], [t])["input_ids"][0].tolist() for q, t in zip(queries, texts)]
    calls = []
    hf = tok.hf
    monkeypatch.setattr(tok, "hf", lambda batch, **kwargs: calls.append(list(batch)) or hf(batch, **kwargs))
    enc = tok.encode_pairs(queries, texts)
    assert calls == [["红色", "长裙子", "拍照"], ["红色 连衣裙", "手机 新款"]]
    for row, mask, alone in zip(enc["input_ids"], enc["attention_mask"], one_by_one):
        assert row[mask.bool()].tolist() == alone
    assert tok.tokenize([], 4) == [] and tok.tokenize([], 4, offsets=True) == ([], [])


def test_the_e5_tokenizer_packs_pairs_with_its_own_specials():
    tok = Tokenizer.from_config(preset("e5small"))
    enc = tok.encode_pairs(["感冒了怎么办"], ["感冒的治疗方法"])
    ids = enc["input_ids"][0].tolist()
    pieces = [tok.pieces[i] for i in ids]
    assert pieces[0] == "<s>" and pieces.count("</s>") == 2 and pieces[-1] == "</s>"
    assert "感冒" in pieces  # Unigram pieces are words, not single characters
    assert enc["token_type_ids"][0].tolist() == [0] * (pieces.index("</s>") + 1) + [1] * (len(ids) - pieces.index("</s>") - 1)
    assert (tok.cls_id, tok.pad_id, tok.sep_id, tok.unk_id, tok.mask_id) == (0, 1, 2, 3, 4)


def test_the_match_aware_input_works_with_the_e5_tokenizer():
    from hcmrm.model.layers import BIGRAM_MATCH, NO_MATCH, match_ids

    config = preset("e5small")
    tok = Tokenizer.from_config(config)
    enc = tok.encode_pairs(["治疗方法有哪些"], ["感冒的治疗方法"])
    match = match_ids(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"], config.text.first_word_id)[0]
    pieces = [tok.pieces[i] for i in enc["input_ids"][0].tolist()]
    by_piece = dict(zip(pieces, match.tolist()))
    assert by_piece["治疗"] == by_piece["方法"] == BIGRAM_MATCH  # the run "治疗 方法" is on both sides
    assert by_piece["有哪些"] == NO_MATCH and by_piece["<s>"] == NO_MATCH
    assert by_piece["\u2581"] == NO_MATCH  # the word-start piece is below first_word_id: never a match


def test_an_unknown_tokenizer_name_is_refused():
    import pytest

    with pytest.raises(ValueError, match="unknown tokenizer 'nope'"):
        Tokenizer(name="nope")
