"""`hcmrm params`: per-tower parameter counts of the presets, without building real tensors."""

import json

from hcmrm.model.config import preset
from hcmrm.model.network import HCMRM
from jobs.cli import main
from jobs.params import count_parameters


def test_counts_match_a_real_model_and_add_up():
    counts = count_parameters("tiny")
    real = sum(p.numel() for p in HCMRM(preset("tiny")).parameters())
    assert counts["total"] == real
    assert counts["text"] + counts["fusion"] + counts["vision"] + counts["heads"] == real


def test_base_has_bert_and_vit_sizes():
    counts = count_parameters("base")
    # 6 BERT-base layers = 6 x 7,087,872; embeddings 16,622,592 (21128 x 768 words, 512 positions, 2 types, norm)
    assert counts["text"] == 16_622_592 + 6 * 7_087_872
    # fusion layers add a cross-attention block (4 x 768^2 + biases + norm = 2,363,904) to each BERT layer
    assert counts["fusion"] == 6 * (7_087_872 + 2_363_904)


def test_command_prints_json(capsys):
    try:
        main(["params", "--preset", "tiny", "--json"])
    except SystemExit as exit:
        assert exit.code == 0
    assert json.loads(capsys.readouterr().out)["tiny"]["total"] == count_parameters("tiny")["total"]
