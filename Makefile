# The two commands of README.md: `make demo` (install + main job on embedded defaults), `make test`.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo test
install:
	bash scripts/install.sh

demo: install
	$(VENV)/bin/astradup demo

# Two xdist workers: a serial run leaves one of the CI machine's two cores idle while it waits for
# servers and subprocesses (1 235-1 385 s serially, 936-1 078 s so); tests/conftest.py keeps each module
# on one worker.
test: install
	$(PY) -m pytest -q -n 2 --dist loadgroup tests
