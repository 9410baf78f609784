# chordcast: `make demo` and `make test` work on a fresh machine with Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
RUN    := $(VENV)/.installed-run
DEV    := $(VENV)/.installed-dev

.PHONY: demo test proto lint types bench clean system-deps sim-report

# What running chordcast needs (the demo, the CLI, nodes) ...
$(RUN): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("chordcast needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(RUN)

# ... and what testing it needs on top (pytest, mypy, ruff, the deployment-file validators).
$(DEV): $(RUN)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(DEV)

demo: $(RUN)
	$(VENV)/bin/chordcast demo

test: $(DEV) system-deps types
	$(PY) -m pytest -q

# Real components the tests use: Debian's prometheus (dashboard queries), iproute2 (discovery
# across network namespaces) and chromium (the live view in a real browser). Installed as
# root; elsewhere those tests skip, naming the package.
system-deps:
	@missing=""; \
	command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "not installed:$$missing (the tests that need them will be skipped)"; \
	  fi; \
	fi

proto: $(DEV)
	$(PY) -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. protos/chordcast/v1/*.proto

lint: $(DEV) types
	$(VENV)/bin/ruff check .

# mypy over chord, mcast and chordcast (settings in pyproject.toml): part of lint and test.
types: $(DEV)
	$(VENV)/bin/mypy

# The peer DHT (PyPI kademlia) lives in a venv of its own, so it shares nothing with ours.
KAD := bench/.venv-kademlia/bin/python
$(KAD):
	$(PYTHON) -m venv bench/.venv-kademlia
	$(KAD) -m pip install --quiet kademlia==2.2.3

bench: $(DEV) $(KAD)
	$(PY) bench/run.py

# Seeded simulator runs -> docs/simulation.md + docs/img/*.png (takes a while at full size).
sim-report: $(DEV)
	$(PY) -m pip install --quiet -e '.[dev,report]'
	$(PY) -m bench.sim_report

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
