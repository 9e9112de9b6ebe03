# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The port settings read (environment, else .env, else 3100), so the server and PUBLIC_BASE_URL agree.
PORT ?= $(or $(shell sed -n 's/^PORT=//p' .env 2>/dev/null | tail -n 1),3100)
# Loopback only unless told otherwise: `HOST=0.0.0.0 make run` exposes the server to the network
# (README, "Exposing the server").
HOST ?= 127.0.0.1

.PHONY: run test lint venv migrate demo worker clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

# First run: a new .env says DEMO_MODE=true; `init_secrets` adds SECRET_KEY and ORCHESTRATOR_TOKEN to it.
.env:
	printf 'DEMO_MODE=true\n' > .env
	chmod 600 .env

run: venv .env
	@grep -q '^DEMO_MODE=' .env || printf 'DEMO_MODE=true\n' >> .env
	$(PY) manage.py init_secrets
	$(PY) manage.py migrate --no-input -v 0
	# DEBUG is off by default: the server itself serves the admin's static files from STATIC_ROOT.
	$(PY) manage.py collectstatic --no-input -v 0
	$(PY) manage.py load_demo_data
	$(PY) manage.py connect_info
	# The delivery worker (callback retries, body retention) runs beside the server and stops with it.
	# uvicorn on httptools + uvloop: an HTTP layer at a third of the CPU of h11 + asyncio (README, "Which server").
	$(PY) manage.py deliver_callbacks & worker=$$!; trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(PY) -m uvicorn orchestrator.asgi:application --host $(HOST) --port $(PORT) --http httptools --loop uvloop

test: venv
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .
	# No private API or monkeypatch of a library (issue 15): exceptions in tools/private_access_allowlist.txt.
	$(PY) tools/check_private_access.py

clean:
	rm -rf $(VENV) db.sqlite3
