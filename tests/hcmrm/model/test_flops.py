"""FLOP per pair counted on the real forward passes: cached text attention runs a fraction of full's."""

import torch

from hcmrm.model.flops import counted, pair_flops
from hcmrm.model.network import build_model


def test_cpu_attention_is_counted():
    q = torch.randn(1, 2, 5, 8)
    k = torch.randn(1, 2, 7, 8)
    flops = counted(torch.nn.functional.scaled_dot_product_attention, q, k, k, torch.ones(1, 1, 5, 7, dtype=torch.bool))
    assert flops == 2 * (2 * 2 * 5 * 7 * 8)  # q k^T and (attention) v


def test_cached_costs_a_fraction_of_full_per_pair_on_tiny():
    torch.manual_seed(0)
    full = build_model("tiny").eval()
    cached = build_model("tiny", text_attention="cached").eval()
    c = full.config
    row = pair_flops(full, cached, c.max_query_len, c.max_text_len, frames=2, queries_per_ad=40)
    # Per pair, cached runs the query's 10 of the pair's 35 tokens; its text pass is paid once per ad.
    assert row.cached_per_pair < row.full_per_pair * 0.3
    assert 0 < row.cached_text_per_ad < row.full_per_pair
    assert row.full_amortised / row.cached_amortised > 3.5
    # With one query per ad nothing is shared, and cached is still no dearer (its last layers run only what is read).
    one_query = pair_flops(full, cached, c.max_query_len, c.max_text_len, frames=2, queries_per_ad=1)
    assert one_query.cached_amortised <= one_query.full_amortised
