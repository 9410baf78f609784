# chordcast: `make demo` and `make test` work on a fresh machine with Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test proto lint types bench clean system-deps sim-report

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("chordcast needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/chordcast demo

test: $(STAMP) system-deps types
	$(PY) -m pytest -q

# Real components the tests use: Debian's prometheus (dashboard queries) and iproute2
# (discovery across network namespaces). Installed as root; elsewhere those tests skip.
system-deps:
	@missing=""; \
	command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "not installed:$$missing (the tests that need them will be skipped)"; \
	  fi; \
	fi

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. protos/chordcast/v1/*.proto

lint: $(STAMP) types
	$(VENV)/bin/ruff check .

# mypy over chord, mcast and chordcast (settings in pyproject.toml): part of lint and test.
types: $(STAMP)
	$(VENV)/bin/mypy

# The peer DHT (PyPI kademlia) lives in a venv of its own, so it shares nothing with ours.
KAD := bench/.venv-kademlia/bin/python
$(KAD):
	$(PYTHON) -m venv bench/.venv-kademlia
	$(KAD) -m pip install --quiet kademlia==2.2.3

bench: $(STAMP) $(KAD)
	$(PY) bench/run.py

# Seeded simulator runs -> docs/simulation.md + docs/img/*.png (takes a while at full size).
sim-report: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,report]'
	$(PY) -m bench.sim_report

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
