# The two commands of README.md: `make demo` (install + main job on embedded defaults), `make test`.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo test
install:
	bash scripts/install.sh

demo: install
	$(VENV)/bin/astradup demo

# Two xdist workers, each module (or group of modules, tests/conftest.py) whole on one; one process
# took 1 235-1 385 s on the 2-core CI machine.
test: install
	$(PY) -m pytest -q -n 2 --dist loadfile tests
