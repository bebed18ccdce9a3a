# Civic Credits: `make run` to try it, `make test` to check it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
PYTEST_WORKERS ?= auto
export PORT

.PHONY: run test install assets lint format migrate demo clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

core/static/css/app.css: node_modules/.installed assets/app.scss scripts/build-assets.mjs
	npm run --silent build

install: $(VENV)/.installed
assets: core/static/css/app.css

migrate: install
	$(BIN)/flask --app wsgi db upgrade

demo: migrate
	$(BIN)/flask --app wsgi demo load

## make run: install everything, migrate, load demo data, start web + worker + beat.
run: install assets demo
	@echo ""
	@echo "Civic Credits is starting on http://127.0.0.1:$(PORT)  (Ctrl-C stops the web app, worker and beat)"
	@echo "Demo logins, all with password demo-password: resident@example.org, organiser@example.org,"
	@echo "  partner@example.org, council@example.org, admin@example.org"
	@echo ""
	CIVIC_CREDITS_ENV=$${CIVIC_CREDITS_ENV:-development} $(BIN)/honcho --no-prefix -f Procfile.dev start -p $(PORT) 2>&1 || true

## make test: lint, format check, and the whole suite (SQLite unless DATABASE_URL is set).
test: install assets
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) node_modules core/static/govuk core/static/css .pytest_cache
