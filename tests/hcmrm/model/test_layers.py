"""Match-aware input: which tokens occur on the other side of the pair, and a zero-initialised embedding of it."""

import torch

from hcmrm.model.layers import BIGRAM_MATCH, NO_MATCH, TOKEN_MATCH, match_ids
from hcmrm.model.network import build_model
from hcmrm.model.tokenizer import Tokenizer


def pair_match(query: str, text: str) -> list[tuple[str, int]]:
    tokenizer = Tokenizer(16, 32)
    batch = tokenizer.encode_pairs([query], [text])
    ids = match_ids(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], first_word_id=104)
    tokens = tokenizer.hf.convert_ids_to_tokens(batch["input_ids"][0].tolist())
    return list(zip(tokens, ids[0].tolist()))


def test_a_shared_word_is_a_bigram_match_on_both_sides_and_a_lone_character_a_token_match():
    matches = pair_match("感冒药", "治感冒的药")
    assert matches == [
        ("[CLS]", NO_MATCH), ("感", BIGRAM_MATCH), ("冒", BIGRAM_MATCH), ("药", TOKEN_MATCH), ("[SEP]", NO_MATCH),
        ("治", NO_MATCH), ("感", BIGRAM_MATCH), ("冒", BIGRAM_MATCH), ("的", NO_MATCH), ("药", TOKEN_MATCH),
        ("[SEP]", NO_MATCH),
    ]


def test_a_bigram_across_the_separator_or_within_one_side_is_no_match():
    # "冒药" is a bigram of the query only; "药" alone still occurs on both sides.
    matches = dict(pair_match("冒药", "药冒"))
    assert set(matches.values()) <= {NO_MATCH, TOKEN_MATCH}


def test_padding_and_special_tokens_never_match():
    tokenizer = Tokenizer(16, 32)
    batch = tokenizer.encode_pairs(["感冒", "感冒药怎么吃"], ["感冒", "感冒"])
    ids = match_ids(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], first_word_id=104)
    special = batch["input_ids"] < 104  # [CLS], [SEP], [PAD]
    assert (ids[special] == NO_MATCH).all()
    assert (ids[~special] != NO_MATCH).any()


def test_the_match_embedding_starts_at_zero_so_outputs_equal_a_model_without_it():
    torch.manual_seed(0)
    plain = build_model("tiny", text={"match_embeddings": False}).eval()
    aware = build_model("tiny", text={"match_embeddings": True}).eval()
    aware.load_state_dict({**plain.state_dict(), "embeddings.match.weight": aware.embeddings.match.weight}, strict=True)
    assert torch.count_nonzero(aware.embeddings.match.weight) == 0
    batch = Tokenizer(8, 24).encode_pairs(["感冒药", "头疼"], ["治感冒的药", "感冒"])
    video = plain.empty_video(2)
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], video)
    torch.testing.assert_close(aware.relevance(*args).probs, plain.relevance(*args).probs)


def test_a_trained_match_embedding_changes_the_score():
    torch.manual_seed(0)
    model = build_model("tiny", text={"match_embeddings": True}).eval()
    batch = Tokenizer(8, 24).encode_pairs(["感冒药"], ["治感冒的药"])
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], model.empty_video(1))
    before = model.relevance(*args).score
    with torch.no_grad():
        model.embeddings.match.weight.normal_()
    assert not torch.allclose(model.relevance(*args).score, before)
