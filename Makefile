# The two commands a newcomer needs:
#   make demo   set everything up (virtualenv .venv/), start the server on the built-in demo model,
#               show an OpenAI-style request and its answer, stop the server
#   make test   set everything up and run the default test suite
# Both create .venv/ on first use; later runs reuse it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

PROMPT ?= Once upon a time
.PHONY: demo generate test lint install clean

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# A source checkout's builtin plugins carry no release signature: the demo runs them with the loud
# development switch (see trust/README.md).
demo: $(STAMP)
	TRITIUM_ALLOW_UNSIGNED_PLUGINS=1 $(BIN)/python tools/demo.py --prompt "$(PROMPT)"

generate: $(STAMP)
	$(BIN)/tritium generate --prompt "$(PROMPT)" --max-tokens 64 --temperature 0

# pytest exits 5 when it collects no tests; make treats any non-zero exit as failure.
test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
