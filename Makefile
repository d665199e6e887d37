# threeregime: two commands do everything on a fresh machine.
#   make demo   create .venv, install, run the default sweep, write results/quick.{nc,png}
#   make test   create/update .venv, run the whole test suite
#   make docs   the API reference (Sphinx, warnings are errors) in docs/api/_build/html
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=
export MPLBACKEND := Agg

.PHONY: install test test-all demo bench lint clean notebooks lab-check docs

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# the constraints file pins torch==2.13.0 (the CPU build here); see README
	$(BIN)/python -m pip install -q -c constraints.txt "torch==2.13.0"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,dask,slurm,docs]"
	@touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: install
	$(BIN)/python -m pytest --runslow $(PYTEST_ARGS)

demo: install
	$(BIN)/threeregime run sweeps/quick.yaml --out runs/quick
	@mkdir -p results   # export and plot never create folders (issue 20)
	$(BIN)/threeregime export runs/quick results/quick.nc
	$(BIN)/threeregime plot results/quick.nc -o results/quick.png
	@echo "demo: wrote results/quick.nc and results/quick.png"

bench: install
	$(BIN)/python benchmarks/metrics.py
	$(BIN)/python benchmarks/engine.py

notebooks: install
	$(BIN)/python -m jupytext --sync notebooks/[0-9]*.py

# the notebooks in a real JupyterLab + headless Chromium (needs the lab extra, selenium and
# Debian's chromium + chromium-driver; see docs/lab_check.md): screenshots in docs/lab_screenshots
lab-check: install
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[lab]" selenium
	$(BIN)/python scripts/lab_check.py $(LAB_CHECK_ARGS)

# the API reference from the docstrings (Sphinx + numpydoc), warnings are errors:
# docs/api/_build/html/index.html (tests/test_docs.py builds it too, in a temporary folder)
docs: install
	$(BIN)/python -m sphinx -W --keep-going -b html docs/api docs/api/_build/html

lint: install
	$(BIN)/python -m ruff check threeregime tests benchmarks

clean:
	rm -rf $(VENV) results runs .pytest_cache docs/api/_build docs/api/generated
