# The two commands of README.md: `make demo` (install + main job on embedded defaults), `make test`.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo test
install:
	bash scripts/install.sh

demo: install
	$(VENV)/bin/astradup demo

# Two xdist workers: the 2-core CI machine spends much of a serial run waiting on one core for servers
# and subprocesses (24 -> ~16 min); tests/conftest.py keeps each module on one worker.
test: install
	$(PY) -m pytest -q -n 2 --dist loadgroup tests
