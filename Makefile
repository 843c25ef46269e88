# Two commands do all the set-up: `make bench` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

QUICKSTART = multirun/quickstart/report

.PHONY: bench check leaderboard paper test test-all lint readme install clean perf anchors

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The quickstart sweep, its table (Markdown and LaTeX), figures (PNG and PDF) and one HTML page
# under $(QUICKSTART); the last line printed is the page's path.
bench: $(STAMP)
	$(BIN)/valbench -m experiment=quickstart
	$(BIN)/valbench-report collect multirun/quickstart -o $(QUICKSTART)/results
	$(BIN)/valbench-report table $(QUICKSTART)/results.parquet -o $(QUICKSTART)/table
	$(BIN)/valbench-report plot $(QUICKSTART)/results.parquet -o $(QUICKSTART)/figures
	$(BIN)/valbench-report html multirun/quickstart -o $(QUICKSTART)/report.html --title "valbench quickstart"

# The leaderboard sweeps (~30 min on 2 shared cores; reruns skip finished jobs), their statistics
# and figures under results/leaderboard/ and their HTML page.
leaderboard: $(STAMP)
	$(BIN)/valbench -m experiment=leaderboard
	$(BIN)/valbench -m experiment=leaderboard_poison
	$(BIN)/valbench-report leaderboard multirun/leaderboard multirun/leaderboard_poison -o results/leaderboard
	$(BIN)/valbench-report html multirun/leaderboard multirun/leaderboard_poison -o multirun/leaderboard/report.html --title "valbench leaderboard"

# The two papers' figures (AME, Lin et al. 2022; final-model-only, Wei et al. 2024): the sweeps
# conf/experiment/paper_*.yaml under multirun/ (reruns skip finished jobs; `valbench-report paper --plan`
# prints the jobs and the estimated time), figures and tables under results/paper/ beside the papers'
# claims (results/paper/summary.md). `valbench-report paper --tiny` runs every figure's code path.
paper: $(STAMP)
	$(BIN)/valbench-report paper

# The CI regression check: the ci sweep against the committed baseline (exit 1 on a regression).
# CHECK_ARGS: e.g. "--sweep-dir DIR" to keep the sweep (.ci/run hands it to the tests).
check: $(STAMP)
	$(BIN)/valbench-report check --baseline results/baselines/ci.csv $(CHECK_ARGS)

# Engine benchmarks on this machine -> results/perf/ (CSV + Markdown with the load average; a few
# minutes on 2 cores). `make anchors ODV=/path/to/opendataval-venv/bin/python`: vs OpenDataVal.
perf: $(STAMP)
	$(BIN)/python -m valbench.perf engine
	$(BIN)/python -m valbench.perf engine --model mlp --masks 128 --reference-masks 8
	$(BIN)/python -m valbench.perf engine --model cnn --masks 16 --reference-masks 4 model.steps=100
	$(BIN)/python -m valbench.perf engine --model resnet9 --masks 2 --reference-masks 1 --repeats 1 \
		--n-train 500 model.steps=10 model.batch_size=32
	$(BIN)/python -m valbench.perf chunks

anchors: $(STAMP)
	$(BIN)/python -m valbench.perf anchors --odv-python $(ODV) --anchors ../shared/anchors

# The tests without those marked slow (whole sweeps in subprocesses, the CI sweep, iterative
# solvers): a few minutes on 2 cores. test-all runs every test, as CI does.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

# Every README and docs/ table from its committed results file (the <!-- valbench-table: PATH -->
# blocks) and docs/methods.md from conf/method/.
readme: $(STAMP)
	$(BIN)/valbench-report readme

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf outputs multirun .pytest_cache
