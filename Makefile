# The verbs a newcomer types. `make demo` and `make test` set everything up first.
PYTHON_BOOT ?= $(shell command -v python3.11 || command -v python3)
VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
JARS_STAMP  := $(VENV)/.delta-jars

export SPARK_LOCAL_IP         ?= 127.0.0.1
export MLFLOW_DISABLE_TELEMETRY = true
export PYSPARK_PYTHON         ?= $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON  ?= $(abspath $(PY))
export TOKENIZERS_PARALLELISM  = false
export PYTHONUNBUFFERED        = 1

.PHONY: setup demo test cluster-up cluster-down wheel dist bench bench-pseudo-query bench-scoring bench-scale bench-compare bench-time-split bench-incremental bench-lake-growth bench-worker-memory bench-flops bench-gpu bench-train-scale bench-train-gpu keyword-quality ablation params lock clean report-check

setup: $(STAMP) $(JARS_STAMP)

# The pinned stack (requirements.txt is the lock; requirements.in its top-level pins).
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# Delta's jars, resolved from Maven Central once into ~/.cache/hcmrm/ivy; later sessions read the cache.
$(JARS_STAMP): $(STAMP)
	$(PY) -m jobs.session
	touch $@

demo: setup
	$(PY) -m jobs.cli demo

test: setup
	$(PY) -m pytest

# A local standalone cluster (master + 2 workers on 127.0.0.1, free ports) for spark-submit --master;
# its master URL, pids and logs are in .cluster/. cluster-down stops exactly those pids.
cluster-up: setup
	$(PY) scripts/standalone_cluster.py start --state .cluster/state.json

cluster-down:
	$(PY) scripts/standalone_cluster.py stop --state .cluster/state.json

# The project as a wheel, dist/hcmrm_labeler-<version>-py3-none-any.whl (conf/, the sample and the vocabulary
# inside): `pip install` it into any Python 3.11 venv. Built without network, by the venv's setuptools; build/ is
# removed before and after, since setuptools would carry deleted modules from a stale one into the wheel.
wheel: $(STAMP)
	rm -rf build dist/hcmrm_labeler-*.whl
	$(PY) -m pip wheel -q --no-deps --no-build-isolation --no-index -w dist .
	rm -rf build
	ls dist/hcmrm_labeler-*.whl

# The environment executors run in, packed with venv-pack for `spark-submit --archives dist/hcmrm-env.tar.gz#env`
# (README, "On a cluster"): the lock and the wheel installed into a fresh venv under build/ (not the editable
# checkout venv), then packed. The archive holds no interpreter: executors need Python 3.11 at the path of
# $(PYTHON_BOOT) (venv-pack's --python-prefix changes it). About 3 GB, since the lock carries CUDA torch.
DIST_ENV := build/dist-env
dist: wheel
	rm -rf $(DIST_ENV) dist/hcmrm-env.tar.gz
	$(PYTHON_BOOT) -m venv $(DIST_ENV)
	$(DIST_ENV)/bin/python -m pip install -q -r requirements.txt
	$(DIST_ENV)/bin/python -m pip install -q --no-deps dist/hcmrm_labeler-*.whl
	$(VENV)/bin/venv-pack -q -p $(DIST_ENV) -o dist/hcmrm-env.tar.gz --compress-level 1
	rm -rf $(DIST_ENV)
	ls -l dist/hcmrm-env.tar.gz dist/hcmrm_labeler-*.whl

params: setup
	$(PY) -m jobs.cli params

bench: bench-pseudo-query bench-scoring

bench-pseudo-query: setup
	$(PY) benchmarks/pseudo_query_throughput.py

bench-scoring: setup
	$(PY) benchmarks/scoring_engine.py --preset small --frames 4
	$(PY) benchmarks/scoring_engine.py --preset small --frames 4 --framed-only
	$(PY) benchmarks/scoring_spark_overhead.py --preset tiny --repeat 4

# Scoring as the day grows (20k, 200k, 1M synthetic pairs, one hot ad with 30%): pairs/s, per-pair time, peak RSS.
# Many minutes: a bench, not a test (docs/scoring.md has its figures).
bench-scale: setup
	$(PY) benchmarks/scoring_scale.py --sizes 20000 200000 1000000

# Incremental scoring: a day with 80% of its pairs scored on an earlier day against a fresh day, 3 interleaved rounds.
bench-incremental: setup
	$(PY) benchmarks/scoring_incremental.py --preset small --ads 120 --queries-per-ad 40 --rounds 3

# One fixed day scored in a lake holding 1x and 10x as many videos on other dates: the night's time ratio.
bench-lake-growth: setup
	$(PY) benchmarks/lake_growth.py

# A scoring Python worker's private memory by cause (imports, model, one day's batch), tiny and base.
bench-worker-memory: setup
	$(PY) benchmarks/worker_memory.py --presets tiny base

# Our Spark job against mlflow.pyfunc.spark_udf, predict_batch_udf and the plain engine, same weights, same day
# (PAIRS pairs, 40 queries an ad; REPEAT_SHARE of them scored the day before), interleaved rounds; the last
# line is one JSON object (docs/scoring.md). ~10 min at the default 40,000 pairs.
PAIRS ?= 40000
REPEAT_SHARE ?= 0
bench-compare: setup
	$(PY) benchmarks/scoring_compare.py --preset small --text-attention cached --pairs $(PAIRS) \
		--repeat-share $(REPEAT_SHARE) --rounds 3

# Where the job's time and CPU go at 1M pairs (phases from Spark's stages, JVM / Python worker / plain CPU, the
# JVM's CPU by thread kind), one run each of job, plain, mlflow_spark_udf, job (docs/scoring.md). ~25 min.
bench-time-split: setup
	$(PY) benchmarks/scoring_time_split.py --pairs 1000000

# FLOP per pair, full vs cached text attention, for `base` at its length limits and at the sample's lengths;
# then the engine's achieved FLOP/s over a 1-thread matmul peak, per preset.
bench-flops: setup
	$(PY) benchmarks/flop_per_pair.py --preset base --queries-per-ad 40 --frames 4
	$(PY) benchmarks/flop_per_pair.py --efficiency tiny small base --pairs 200

# The Spark-free engine on the accelerator (bf16): pairs/s, FLOP per pair and MFU; needs no pyspark.
bench-gpu: setup
	$(PY) benchmarks/engine_gpu.py --preset base

# Pre-training at 20k and 1M rows on the standalone cluster (2 ranks, tiny): memory, steps/s, data wait.
bench-train-scale: setup
	$(PY) benchmarks/train_scale.py --rows 20000 1000000

# Pre-training and fine-tuning steps of `base` on the accelerator (bf16 autocast, fp32 weights), no pyspark:
# samples/s, MFU, peak memory per batch size, and one step's bf16 loss next to fp32 on the CPU (docs/training.md).
bench-train-gpu: setup
	$(PY) benchmarks/train_gpu.py --preset base

keyword-quality: setup
	$(PY) experiments/keyword_quality.py

ablation: setup
	$(PY) experiments/ablation.py

# Re-resolve the lock from requirements.in (needs the network).
lock:
	rm -rf .lock-venv && $(PYTHON_BOOT) -m venv .lock-venv
	.lock-venv/bin/pip install -q -r requirements.in
	.lock-venv/bin/pip freeze > requirements.txt && rm -rf .lock-venv

# The report page in a real headless browser (Debian's chromium, installed here when missing): a screenshot
# into reports/ and a check of what it rendered. Needs the report (make demo); not part of `make test`.
report-check: setup
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(PY) scripts/check_report_page.py --page reports/irrelevant_rate.html

clean:
	rm -rf lake mlruns.db mlartifacts reports audits spark-warehouse metastore_db derby.log
