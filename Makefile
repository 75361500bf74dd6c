# Two commands on a fresh machine: `make demo` (the main job on the bundled default model) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test setup browser legacy clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Debian's Chromium + driver (browser test) and OpenSSH (the `bench --remote` test against a real sshd on
# 127.0.0.1); those tests skip, saying why, where we cannot install them.
TEST_DEBS := chromium chromium-driver openssh-server openssh-client
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && command -v sshd >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_DEBS) >/dev/null) \
	      || echo "note: could not install $(TEST_DEBS); the browser and ssh tests will skip"; \
	    else echo "note: not root: install $(TEST_DEBS) for the browser and ssh tests"; fi; }

# The legacy tflite-runtime interpreter needs numpy<2, so it lives in its own venv; the backend-equality test
# runs there and skips (saying why) where it cannot be built (tflite-runtime has wheels up to Python 3.11).
LEGACY := .venv-tflite
$(LEGACY)/.installed: pyproject.toml
	@( $(PYTHON) -m venv $(LEGACY) && \
	  $(LEGACY)/bin/python -m pip install --quiet 'tflite-runtime==2.14.*' 'numpy<2' 'opencv-python-headless<4.11' click && \
	  $(LEGACY)/bin/python -m pip install --quiet --no-deps -e . && touch $@ ) \
	  || echo "note: could not build $(LEGACY); the tflite-runtime test will skip"

legacy: $(LEGACY)/.installed

demo: setup
	$(BIN)/python -m edgevision.demo

test: setup browser legacy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(LEGACY) build dist *.egg-info .pytest_cache demo-output
