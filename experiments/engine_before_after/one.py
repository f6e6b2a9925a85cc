"""pairs/s of the engine of whichever checkout is on PYTHONPATH: the shipped model, 4,000 synthetic pairs
(queries of 7 characters, texts of 30, one JPEG frame per ad), N queries per ad, 1 torch thread; best of 2."""
import json
import sys
import time

import torch

from benchmarks.engine_gpu import synthetic_ads
from hcmrm.scoring import Scorer, ScoringConfig

torch.set_num_threads(1)
queries_per_ad, model = int(sys.argv[1]), sys.argv[2]
ads = synthetic_ads(4000 // queries_per_ad, queries_per_ad, 7, 30, 1)
scorer = Scorer.from_dir(model, ScoringConfig())
scorer.score(ads[:20])
best = 0.0
for _ in range(2):
    start = time.perf_counter()
    scorer.score(ads)
    best = max(best, 4000 / (time.perf_counter() - start))
print(json.dumps({"queries_per_ad": queries_per_ad, "pairs_per_s": round(best, 1)}))
