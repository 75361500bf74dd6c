# Two commands on a fresh machine: `make demo` (the main job on the bundled default model) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test setup browser legacy consumers clean

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

# Two third-party consumers of the .tflite files edgevision writes, each in its own venv because neither can live
# beside TensorFlow (tflite-support 0.4.4 pins protobuf 3; mediapipe is large). They get no edgevision: only a
# model file and images. tests/test_consumers.py skips (saying why) where one could not be built.
MEDIAPIPE := .venv-mediapipe
$(MEDIAPIPE)/.installed:
	@( $(PYTHON) -m venv $(MEDIAPIPE) && \
	  $(MEDIAPIPE)/bin/python -m pip install --quiet 'mediapipe==0.10.35' numpy && \
	  $(MEDIAPIPE)/bin/python -c 'import mediapipe.tasks.python.vision' && touch $@ ) \
	  || echo "note: could not build $(MEDIAPIPE); the MediaPipe consumer tests will skip"

# tflite-support's native module links Debian's libusb-1.0 (installed here as root, like the browser packages).
TFSUPPORT := .venv-tfsupport
$(TFSUPPORT)/.installed:
	@ldconfig -p 2>/dev/null | grep -q 'libusb-1\.0\.so\.0' || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null) \
	      || echo "note: could not install libusb-1.0-0; the Task Library consumer tests will skip"; \
	    else echo "note: not root: install libusb-1.0-0 for the Task Library consumer tests"; fi; }
	@( $(PYTHON) -m venv $(TFSUPPORT) && \
	  $(TFSUPPORT)/bin/python -m pip install --quiet 'tflite-support==0.4.4' 'numpy<2' && \
	  $(TFSUPPORT)/bin/python -c 'from tflite_support import metadata; import tflite_support.task.vision' && touch $@ ) \
	  || echo "note: could not build $(TFSUPPORT); the Task Library consumer tests will skip"

consumers: $(MEDIAPIPE)/.installed $(TFSUPPORT)/.installed

# The demo needs only what a device needs (the edge extra: no TensorFlow, no Streamlit), in its own venv, so
# `make demo` on a fresh clone installs a few hundred MB, not the dev environment `make test` builds.
DEMO_VENV := .venv-demo
$(DEMO_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DEMO_VENV)/bin/python -m pip install --quiet -e '.[edge]'
	touch $@

demo: $(DEMO_VENV)/.installed
	$(DEMO_VENV)/bin/python -m edgevision.demo

test: setup browser legacy consumers
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_VENV) $(LEGACY) $(MEDIAPIPE) $(TFSUPPORT) build dist *.egg-info .pytest_cache demo-output
