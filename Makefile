# edsim: `make lab` to explore, `make test` to verify. Both set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Two stamps: what a learner needs (edsim, JupyterLab, nbval), then the test extra (pytest, hypothesis,
# playwright) that `make test` adds on top.
STAMP  := $(VENV)/.installed
TESTED := $(VENV)/.installed-test

# Options for JupyterLab, e.g. make lab LAB_ARGS="--no-browser --ip=127.0.0.1" on a remote machine.
LAB_ARGS ?=
# JupyterLab refuses to run as root (the usual user in containers) unless told.
ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test test-fast test-browser bench fuzz notebooks student docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

$(TESTED): $(STAMP)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(TESTED)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(ROOT_ARGS) $(LAB_ARGS) notebooks/

test: $(TESTED)
	$(PY) -m pytest tests/ -q
	$(PY) -m pytest --nbval --nbval-current-env --nbval-cell-timeout=120 \
		--nbval-sanitize-with notebooks/sanitize.cfg notebooks/ -q -p no:cacheprovider
	$(MAKE) student
	$(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=120 build/student -q -p no:cacheprovider
	$(MAKE) docs

# Learner copies: solution cells blanked, outputs cleared (build/student/).
student: $(STAMP)
	$(PY) tools/student.py build/student

# The static site (build/site/): the executed notebooks as saved (never re-executed), docs/*.md.
docs: $(STAMP)
	$(PY) tools/site.py build/site

test-browser: $(TESTED)
	$(PY) -m pytest tests/test_browser.py -q -rs

# Re-execute the notebooks in place (nbclient, kernel python3) after changing them; commit the outputs.
notebooks: $(STAMP)
	for nb in notebooks/*.ipynb; do $(PY) tools/execute_notebook.py $$nb; done

bench: $(STAMP)
	$(PY) -m edsim.bench

# Random fault schedules on safe settings (docs/reliability.md): make fuzz N=10000 for the long sweep.
N ?= 2000
fuzz: $(STAMP)
	$(PY) -m edsim.fuzz -n $(N)

test-fast: $(TESTED)
	$(PY) -m pytest tests/ -q -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
