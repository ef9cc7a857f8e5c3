# Two commands do all set-up on a fresh machine with Python 3.11+:
#   make demo   create .venv, install, run the demo
#   make test   create .venv, install, run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench lock clean

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hubnode needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hubnode demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check hubnode tests bench examples
	$(BIN)/ruff format --check hubnode tests bench examples
	$(BIN)/mypy --strict hubnode

BENCHES := append ingest audit crash gossip partition catchup pathway

bench: $(STAMP)
	@for b in $(BENCHES); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; done

# Regenerate requirements.lock (exact versions + hashes of every dependency, test and dev
# extras included) with pip-tools in a throwaway venv. Run after changing pyproject.toml.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet "pip-tools>=7.4,<8"
	.lockenv/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--extra test --extra dev -o requirements.lock pyproject.toml
	rm -rf .lockenv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench/.cache
