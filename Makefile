# The two commands of README.md: `make demo` (install + main job on embedded defaults), `make test`.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo test
install:
	bash scripts/install.sh

demo: install
	$(VENV)/bin/astradup demo

test: install
	$(PY) -m pytest -q tests
