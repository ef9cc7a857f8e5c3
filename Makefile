# Two commands do all set-up on a fresh machine with Python 3.11+:
#   make demo   create .venv, install, run the demo
#   make test   create .venv, install (and Debian's chromium if missing), run the whole suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The browser tests (tests/test_browser.py) drive Debian's Chromium through Playwright
# (pinned in requirements.lock); Playwright's own browser downloads are never used. Its
# rule below runs only when the file is missing. Without root: ask an admin to run
# `apt-get install chromium`, or run the rest with `.venv/bin/pytest -m "not browser"`.
CHROMIUM := /usr/bin/chromium

.PHONY: demo test lint bench lock clean

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hubnode needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hubnode demo

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -q

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "$(CHROMIUM) is missing and installing it needs root: ask an admin to run" \
		"'apt-get install chromium', or run the other tests with" \
		"'.venv/bin/pytest -m \"not browser\"'" >&2; exit 1; fi; \
	echo "installing Debian's chromium for the browser tests"; \
	$$SUDO apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null

lint: $(STAMP)
	$(BIN)/ruff check hubnode tests bench examples
	$(BIN)/ruff format --check hubnode tests bench examples
	$(BIN)/mypy --strict hubnode

BENCHES := append ingest audit crash gossip partition catchup pathway read_verify

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
