# Two commands set everything up on a fresh machine with Python 3.11, Java 17, Maven and make.
VENV   := .venv
PYTHON ?= python3
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

run: $(STAMP)  ## the whole system on the embedded broker, with simulated traffic
	$(VENV)/bin/vigie run

test: $(STAMP)  ## the whole test suite (starts its own broker)
	$(VENV)/bin/pytest -q -ra

bench: $(STAMP)  ## benchmarks: writes bench/results.json and appends to docs/benchmarks.md
	$(VENV)/bin/vigie bench

clean:  ## forget local data (broker log, state, lake); keeps the virtualenv
	rm -rf data/local
