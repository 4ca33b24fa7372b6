# prodvid: `make demo` and `make test` set everything up on a fresh machine, then run.
# torch==2.13.0 is installed first: pip finds its CPU build on this machine's disk, and the package's
# torch range then admits it, so no multi-GB CUDA build is ever pulled. On a GPU machine, install the CUDA
# build of torch 2.13 into the venv instead before `make setup`. The deploy extra (dagster-postgres,
# dagster-k8s) is for deploy/ and its test.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.prodvid-installed
SAMPLE := build/sample/BOTTLE-1.png

.PHONY: setup demo test lint bench bench-gpu clean ui

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dagster,dev,deploy]"
	touch $(STAMP)

demo: setup
	$(BIN)/prodvid sample $(SAMPLE)
	$(BIN)/prodvid generate BOTTLE-1 --image $(SAMPLE) --preset tiny --steps 8 --format story \
		--prompt "a glass bottle on a sunlit marble kitchen counter, soft morning light"

# The Dagster UI (webserver + daemon, http://127.0.0.1:3000) and prodvid's media server with the review page
# (http://127.0.0.1:3001/), PRODVID_MEDIA_URL set so results link there; Ctrl-C stops all of them.
ui: setup
	$(BIN)/python -m prodvid_dagster.ui

# Two workers (pytest-xdist), a test file each at a time: the files that start a server share it within the file.
PYTEST_ARGS ?= -n 2 --dist loadfile

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/bench_frames.py

# The GPU benchmark table (benchmarks/README.md); needs the CUDA build of torch in .venv. BENCH_ARGS=--quick
bench-gpu: setup
	PYTHON=$(BIN)/python benchmarks/gpu.sh $(BENCH_ARGS)

clean:
	rm -rf build prodvid-data .pytest_cache
