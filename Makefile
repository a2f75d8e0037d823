# neurodeploy — the two commands of the README:
#   make demo   set everything up, then run the main job (pipeline on the embedded digits data)
#   make test   set everything up, then run the test suite
PY := .venv/bin/python
OUT ?= runs/digits

.PHONY: setup demo test test-long lint browser clean

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m neurodeploy pipeline --config configs/digits.toml --out $(OUT)

browser:
	bash scripts/install_browser.sh

test: setup browser
	$(PY) -m pytest -q --durations=15

# the longest checks (emulator ≡ Lava on the board-sized nets, torchrun resume, compiled steps of
# every neuron kind, many-kill crash schedules), kept out of `make test`'s 10-minute budget
test-long: setup browser
	$(PY) -m pytest -q -m long --durations=15

lint: setup
	$(PY) -m ruff check neurodeploy exporters sims tests benchmarks

clean:
	rm -rf .venv .venv-lava build dist *.egg-info .pytest_cache runs
