# The two set-up commands of the README: `make book` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODE ?= quick
# Tests run in two processes (pytest-xdist), one thread each (tests/conftest.py): most of the
# suite's time is chapters' kernels starting and small steps, which overlap well.
TEST_WORKERS ?= 2

.PHONY: setup book publish test bench study clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@if git ls-files '*.ipynb' | grep -q .; then \
		echo "Only jupytext .py notebooks are committed; remove:"; git ls-files '*.ipynb'; exit 1; fi
	$(PY) -m pytest -n $(TEST_WORKERS)

book: setup
	$(PY) -m fairkit book --mode $(MODE)

# The built book (make book first) to the gh-pages branch of origin, as the book workflow
# (.github/workflows/book.yml) does on every push to main; the executed notebooks go with it,
# under _sources/, where the chapters' Colab badges open them.
publish: setup
	@test -f _build/html/index.html || { echo "no built book: run make book first"; exit 1; }
	$(VENV)/bin/ghp-import --no-jekyll --push --force \
		--message "book of $$(git rev-parse --short HEAD)" _build/html

# The sweeps behind the book's verdicts, kept in results/ (tables, parameters, provenance).
# One worker with every core: a run then computes exactly as `make book` does (same thread
# count, same numbers), and two single-thread workers were no faster on these chapters.
SEEDS ?= 0,1,2,3,4
WORKERS ?= 1
STUDY := 01_data 02_bias 03_spare 04_counterfactuals 05_fairgen 06_pipeline
# Each chapter is swept at the mode a reader of MODE pools (FairGen's chapters: the study setting).
study: setup
	for chapter in $(STUDY); do \
		mode=$$($(PY) -c "from fairkit.config import swept_mode; print(swept_mode('$$chapter', '$(MODE)'))"); \
		$(PY) -m fairkit sweep notebooks/$$chapter.py -g mode=$$mode -g seed=$(SEEDS) \
			--runs-root results --tables-only --workers $(WORKERS) || exit 1; done
	# claims.SWEEPS' named sweeps: SPARE on its paper's networks (the "backbones" claims read
	# its main comparison only; the ablation and mixing sections are the defaults sweep's)
	$(PY) -m fairkit sweep notebooks/03_spare.py -g mode=$(MODE) -g seed=$(SEEDS) \
		-g "backbones=['resnet18', 'vgg11']" -g run_ablation=False -g run_mixing=False \
		--runs-root results --tables-only --workers $(WORKERS)

bench: setup
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf _build book/chapters runs
