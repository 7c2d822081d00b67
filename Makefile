# The two commands of README.md: `make demo` (install + main job on embedded defaults), `make test`.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo test
install:
	bash scripts/install.sh

demo: install
	$(VENV)/bin/astradup demo

# Two xdist workers: the suite took 936-1 086 s so on the 2-core CI machine, 1 235-1 385 s in one
# process; tests/conftest.py keeps each test module on one worker.
test: install
	$(PY) -m pytest -q -n 2 --dist loadgroup tests
