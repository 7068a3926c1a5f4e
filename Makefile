# The single entry point: make demo, make test, make bench, make lint, make docs, make dist.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: env demo test faults lint format bench screenshots docs docs-serve docs-screenshots dist clean

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/bootstrap
	scripts/bootstrap

demo: env
	$(PY) -m pigeon demo

test: env
	scripts/test

# The fault suite's long profile (the short one runs in `make test`); PIGEON_FAULTS_SEED replays a run.
faults: env
	PIGEON_FAULTS=long scripts/with-servers $(PY) -m pytest -n 2 -rP tests/faults

lint: env
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_layers.py

format: env
	$(VENV)/bin/ruff check --fix src tests benchmarks examples
	$(VENV)/bin/ruff format src tests benchmarks examples

bench: env
	scripts/with-servers sh -c '$(PY) benchmarks/run.py && $(PY) benchmarks/dashboard.py'

# The dashboard's pictures in docs/images, taken by its browser tests (headless Chromium, SQLite).
screenshots: env
	PIGEON_SCREENSHOTS=docs/images scripts/with-servers $(PY) -m pytest -q tests/browser -k sqlite

# The site, built strictly: a broken link or a missing reference fails the build. Offline.
docs: env
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# sdist + wheel, twine-checked, the wheel installed in a new venv where the CLI and the tour run.
dist: env
	scripts/dist

docs-serve: env
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

docs-screenshots: env
	scripts/screenshots

clean:
	rm -rf $(VENV) .venv-django60 .venv-py312 .venv-py313 .servers .mypy_cache .ruff_cache .pytest_cache site dist
