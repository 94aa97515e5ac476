# edsim: `make lab` to explore, `make test` to verify. Both set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: lab test test-fast test-browser bench notebooks student clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

test: $(STAMP)
	$(PY) -m pytest tests/ -q
	$(PY) -m pytest --nbval --nbval-current-env --nbval-cell-timeout=120 \
		--nbval-sanitize-with notebooks/sanitize.cfg notebooks/ -q -p no:cacheprovider
	$(MAKE) student
	$(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=120 build/student -q -p no:cacheprovider

# Learner copies: solution cells blanked, outputs cleared (build/student/).
student: $(STAMP)
	$(PY) tools/student.py build/student

test-browser: $(STAMP)
	$(PY) -m pytest tests/test_browser.py -q -rs

# Re-execute the notebooks in place (nbclient, kernel python3) after changing them; commit the outputs.
notebooks: $(STAMP)
	for nb in notebooks/*.ipynb; do $(PY) tools/execute_notebook.py $$nb; done

bench: $(STAMP)
	$(PY) -m edsim.bench

test-fast: $(STAMP)
	$(PY) -m pytest tests/ -q -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
