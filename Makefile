# The two commands a newcomer needs:
#   make demo   set everything up (virtualenv .venv/) and run the main job on the built-in demo model
#   make test   set everything up and run the default test suite
# Both create .venv/ on first use; later runs reuse it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

PROMPT ?= Once upon a time
.PHONY: demo test lint install clean

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tritium generate --prompt "$(PROMPT)" --max-tokens 64 --temperature 0

# pytest exits 5 when it collects no tests; make treats any non-zero exit as failure.
test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
