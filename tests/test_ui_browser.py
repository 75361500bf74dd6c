"""The web page in a real browser: the real `edgevision ui` command serves it on 127.0.0.1 and a headless
Chromium (Debian's chromium + chromedriver, driven by Selenium) switches models, uploads images and reads
the answers off the page. Skips, saying why, where Chromium, its driver or Selenium are missing.

Models: Google's ImageNet MobileNetV2 from ../shared (when present) and a tiny colour classifier built here
with TensorFlow (red/green/blue: the answer for a plain red picture is known, and would flip to blue if the
page or the runtime mixed up the colour order).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
#: Every wait is bounded. Generous, because CI has 2 busy cores and the first page load starts Streamlit.
START_TIMEOUT_S = 120
UI_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
#: Upload cap given to the server, small so that the oversized-file check needs no big file.
MAX_UPLOAD_MB = 1
WINDOW = (1400, 1200)
COLORS = ("red", "green", "blue")
COLOR_SIZE = 32
REFERENCE = SHARED / "models" / "reference" / "mobilenet_v2_1.0_224_quant.tflite"
REFERENCE_LABELS = SHARED / "models" / "reference" / "imagenet_labels.txt"
CAT = SHARED / "images" / "cat.bmp"
REFERENCE_NAME = REFERENCE.stem
COLORS_NAME = "colors"
BROKEN_NAME = "broken"


# --- what the test feeds the page ----------------------------------------------------------------
def build_colors_model(folder: Path) -> Path:
    """A real TFLite model whose answer is the dominant colour: mean of each RGB channel -> softmax.

    Any per-channel normalisation with a common scale keeps the order of the channel means, so the answer
    for a plain red picture is "red" whatever normalisation the runtime assumes, but "blue" if RGB and BGR
    are swapped anywhere between the upload and the interpreter.
    """
    tf = pytest.importorskip("tensorflow")
    import keras

    inputs = keras.Input((COLOR_SIZE, COLOR_SIZE, 3), name="image")
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    logits = keras.layers.Dense(len(COLORS), use_bias=False, name="logits")(pooled)
    outputs = keras.layers.Softmax()(logits)
    model = keras.Model(inputs, outputs)
    model.get_layer("logits").set_weights([np.eye(3, dtype=np.float32) * 8.0])
    saved = folder / "colors_saved_model"
    model.export(str(saved), verbose=False)
    tflite = tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert()
    shutil.rmtree(saved)
    path = folder / f"{COLORS_NAME}.tflite"
    path.write_bytes(tflite)
    (folder / f"{COLORS_NAME}_labels.txt").write_text("\n".join(COLORS) + "\n")
    return path


def write_color_png(path: Path, bgr) -> Path:
    import cv2

    image = np.zeros((120, 160, 3), np.uint8)
    image[:] = bgr
    assert cv2.imwrite(str(path), image)
    return path


def write_png_bomb(path: Path, side: int = 20000) -> Path:
    """A valid 1-bit PNG that claims side x side pixels: ~50 KB on disk, 400 Mpx (1.2 GB as BGR) decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes((side + 7) // 8)  # filter byte + one bit per pixel
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


# --- the server ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(url: str) -> str:
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
        return response.read().decode()


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path):
        self.proc, self.url, self.log = proc, url, log

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ui-models")
    build_colors_model(folder)
    # A model file cut short (a failed copy): offered like any other, refused with a message when chosen.
    (folder / f"{BROKEN_NAME}.tflite").write_bytes((folder / f"{COLORS_NAME}.tflite").read_bytes()[:600])
    return folder


@pytest.fixture(scope="module")
def browser_available():
    """Skip (saying what is missing) before anything expensive is built."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium", reason="needs selenium (pip install 'edgevision[dev]')")
    pytest.importorskip("streamlit", reason="needs streamlit (pip install 'edgevision[ui]')")


@pytest.fixture(scope="module")
def server(browser_available, models_dir, tmp_path_factory):
    port = free_port()
    args = ["ui", "--host", "127.0.0.1", "--port", str(port), "--models", str(models_dir)]
    args += ["--max-upload-mb", str(MAX_UPLOAD_MB)]
    if REFERENCE.is_file() and REFERENCE_LABELS.is_file():
        args += ["--reference", str(REFERENCE), "--reference-labels", str(REFERENCE_LABELS)]
    log = tmp_path_factory.mktemp("ui-server") / "server.log"
    env = {**os.environ, "EDGEVISION_DEBUG": ""}
    with open(log, "wb") as out:
        command = [sys.executable, "-m", "edgevision.cli", *args]
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"`edgevision ui` exited with {proc.returncode} before serving:\n{server.log_text()}")
            try:
                if health(server.url) == "ok":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the page did not answer /_stcore/health within {START_TIMEOUT_S} s:\n{server.log_text()}")
            time.sleep(0.3)
        yield server
    finally:
        stopped_cleanly = stop(proc)
    assert stopped_cleanly, f"`edgevision ui` did not stop cleanly on SIGTERM ({proc.returncode}):\n{server.log_text()}"


def stop(proc: subprocess.Popen) -> bool:
    """SIGTERM, as a service manager stops it: the CLI must pass it on to Streamlit and exit 0."""
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=STOP_TIMEOUT_S) == 0
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)
        return False


@pytest.fixture(scope="module")
def browser(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="edgevision-chromium-")
    # No network here: nothing that phones home, updates or syncs; a fresh profile every run.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # A fake camera (Chromium's green test pattern) and no permission prompt, for st.camera_input.
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        # Tabs in the background keep running at full speed (the burst test uploads from several at once).
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(UI_TIMEOUT_S)
    driver.set_script_timeout(UI_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# --- driving the page ----------------------------------------------------------------------------
UPLOAD_INPUT = '[data-testid="stFileUploader"] input[type="file"]'
MODEL_RADIO = '[data-testid="stSidebar"] [role="radiogroup"] label'
MODEL_CARD = '[data-testid="stSidebar"] .st-key-model-card'
TOP_LABEL = ".st-key-prediction h3"
TOP5_BARS = '.st-key-top5 [data-testid="stProgress"]'
ERROR = '[data-testid="stAlertContentError"]'
RUNNING_ICON = '[data-testid="stStatusWidgetRunningIcon"]'
STALE = '[data-testid="stElementContainer"][data-stale="true"]'
METRIC = '[data-testid="stMetric"]'
SOURCE_RADIO = '[data-testid="stMain"] [role="radiogroup"] label'
TAKE_PHOTO = '[data-testid="stCameraInputButton"]'
IMAGE_CAPTION = '[data-testid="stImageCaption"]'


def wait(driver, condition, what: str, timeout: float = UI_TIMEOUT_S):
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    # Streamlit re-renders elements under the finder's feet: a stale element just means "look again".
    waiter = WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))
    try:
        return waiter.until(condition)
    except TimeoutException:
        page = page_text(driver)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; page text:\n{page}") from None


def page_text(driver) -> str:
    from selenium.webdriver.common.by import By

    try:
        return driver.find_element(By.TAG_NAME, "body").text[-3000:]
    except Exception as e:  # noqa: BLE001 - only for a failure message
        return f"(no page text: {e})"


def texts(driver, css: str):
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def idle(driver) -> bool:
    """True when no run is in progress and nothing on the page is left over from an earlier run.

    Streamlit streams a run's elements one by one and marks those of the previous run stale until they
    are replaced, so 'not stale' means 'drawn by the current run'.
    """
    from selenium.webdriver.common.by import By

    return not driver.find_elements(By.CSS_SELECTOR, f"{RUNNING_ICON}, {STALE}")


def open_page(driver, server: Server) -> None:
    driver.get(server.url)
    def ready(d):
        return texts(d, UPLOAD_INPUT) and texts(d, MODEL_CARD) and idle(d)

    wait(driver, ready, "the uploader and the model card")


def click_model(driver, name: str) -> None:
    from selenium.webdriver.common.by import By

    labels = {e.text.splitlines()[0]: e for e in driver.find_elements(By.CSS_SELECTOR, MODEL_RADIO) if e.text}
    assert name in labels, f"model {name!r} is not offered in the sidebar; offered: {sorted(labels)}"
    labels[name].click()


def select_model(driver, name: str) -> str:
    """Click `name` in the sidebar and wait for its card; returns the card's text."""
    click_model(driver, name)
    def shown(d):
        return any(t.startswith(name + "\n") for t in texts(d, MODEL_CARD)) and idle(d)

    wait(driver, shown, f"the card of {name}")
    return texts(driver, MODEL_CARD)[0]


def upload(driver, path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, UPLOAD_INPUT).send_keys(str(path))


def answer_for(driver, path: Path, num_bars: int):
    """Upload `path`; wait until the page shows the whole result for it; return (top label, bar texts)."""
    upload(driver, path)
    caption = f"{path.name} · "
    wait(
        driver,
        lambda d: any(t.startswith(caption) for t in texts(d, IMAGE_CAPTION))
        and len(texts(d, TOP5_BARS)) == num_bars
        and texts(d, METRIC)
        and idle(d),
        f"the answer for {path.name}",
    )
    return texts(driver, TOP_LABEL)[0], texts(driver, TOP5_BARS)


def choose_source(driver, source: str) -> None:
    from selenium.webdriver.common.by import By

    radios = {e.text: e for e in driver.find_elements(By.CSS_SELECTOR, SOURCE_RADIO)}
    assert source in radios, f"no image source {source!r} on the page; found {sorted(radios)}"
    radios[source].click()


def error_for(driver, path: Path, expected: str) -> str:
    upload(driver, path)
    def shown(d):
        return any(path.name in t and expected in t for t in texts(d, ERROR)) and idle(d)

    wait(driver, shown, f"the error for {path.name}")
    return next(t for t in texts(driver, ERROR) if path.name in t)


def screenshot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def assert_serving(server: Server) -> None:
    assert server.proc.poll() is None, f"the server died:\n{server.log_text()}"
    assert health(server.url) == "ok"


# --- tests: the command line (no browser needed) -------------------------------------------------
def test_ui_command_imports_neither_streamlit_nor_tensorflow():
    code = (
        "import sys, edgevision.cli, edgevision.ui.cli, edgevision.ui.server, edgevision.ui.settings; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'streamlit', 'tensorflow', 'keras', 'cv2'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_ui_command_refuses_bad_arguments_in_one_line(cli, tmp_path):
    missing = cli("ui", "--models", tmp_path / "nowhere")
    assert missing.returncode == 2 and "no such folder" in missing.stderr, missing.stderr

    model = tmp_path / "m.tflite"
    model.write_bytes(b"TFL3")
    two_labels = ["--reference-labels", tmp_path / "a.txt", "--reference-labels", tmp_path / "b.txt"]
    unpaired = cli("ui", "--reference", model, *two_labels)
    assert unpaired.returncode == 2 and "one labels file per --reference" in unpaired.stderr, unpaired.stderr

    no_model = cli("ui", "--reference", tmp_path / "absent.tflite")
    assert no_model.returncode != 0 and "does not exist" in no_model.stderr, no_model.stderr

    for result in (missing, unpaired, no_model):
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_ui_command_says_when_the_port_is_taken(cli, tmp_path):
    pytest.importorskip("streamlit", reason="needs streamlit (pip install 'edgevision[ui]')")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cli("ui", "--port", port, "--models", tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr


# --- tests: the page in a browser ----------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.shared
def test_reference_model_says_egyptian_cat(server, browser, tmp_path):
    if not (REFERENCE.is_file() and CAT.is_file()):
        pytest.skip(f"needs {REFERENCE} and {CAT} (the read-only ../shared data folder)")
    open_page(browser, server)
    card = select_model(browser, REFERENCE_NAME)
    assert "Classes: 1001" in card and "Input: 224×224×3" in card and "Quantization" in card, card

    top, bars = answer_for(browser, CAT, 5)

    shot = screenshot(browser, tmp_path, "ui-egyptian-cat")
    assert top == "Egyptian cat", bars
    assert len(bars) == 5 and bars[0].startswith("Egyptian cat · "), bars
    metric = texts(browser, METRIC)
    assert metric and metric[0].startswith("Inference time") and metric[0].rstrip().endswith("ms"), metric
    assert shot.stat().st_size > 10_000


@pytest.mark.browser
def test_the_page_opens_on_the_general_model_and_a_clicked_sample_is_classified(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    from edgevision.samples import sample_photos

    open_page(browser, server)
    card = texts(browser, MODEL_CARD)[0]
    assert card.startswith("imagenet-mobilenetv2\n") and "1000 everyday objects" in card, card
    photo = next(s for s in sample_photos() if s.file == "coffee.jpg")
    buttons = {b.text: b for b in browser.find_elements(By.CSS_SELECTOR, ".st-key-samples button")}
    assert photo.file in buttons, f"no sample button {photo.file!r}; found {sorted(buttons)}"
    buttons[photo.file].click()
    wait(browser, lambda d: any(t.startswith(f"{photo.file} · ") for t in texts(d, IMAGE_CAPTION))
         and len(texts(d, TOP5_BARS)) == 5 and idle(d), f"the answer for the sample {photo.file}")
    screenshot(browser, tmp_path, "ui-sample")
    assert texts(browser, TOP_LABEL)[0] == photo.imagenet, texts(browser, TOP5_BARS)


@pytest.mark.browser
def test_switching_model_changes_the_answer(server, browser, tmp_path):
    open_page(browser, server)
    card = select_model(browser, COLORS_NAME)
    assert "Classes: 3" in card and "Input: 32×32×3" in card, card

    red, _ = answer_for(browser, write_color_png(tmp_path / "red.png", (0, 0, 255)), len(COLORS))
    blue, bars = answer_for(browser, write_color_png(tmp_path / "blue.png", (255, 0, 0)), len(COLORS))

    screenshot(browser, tmp_path, "ui-colors")
    assert (red, blue) == ("red", "blue"), bars


@pytest.mark.browser
def test_bad_uploads_get_a_message_and_the_server_keeps_serving(server, browser, tmp_path):
    open_page(browser, server)
    select_model(browser, COLORS_NAME)

    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    message = error_for(browser, garbage, "not a decodable image")
    assert "Could not read this image" in message
    assert_serving(server)

    bomb = write_png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 100_000
    message = error_for(browser, bomb, "20000x20000")
    shot = screenshot(browser, tmp_path, "ui-bomb")
    assert "Mpx limit" in message
    assert_serving(server)

    # Over the upload cap: the browser refuses it before sending a byte, and says so on the page.
    oversized = tmp_path / "oversized.png"
    oversized.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(MAX_UPLOAD_MB * 1024 * 1024 + 1))
    upload(browser, oversized)
    limit_text = f"{MAX_UPLOAD_MB:.1f}MB or smaller"
    wait(browser, lambda d: limit_text in page_text(d) or any(limit_text in (e.get_attribute("textContent") or "")
         for e in d.find_elements("css selector", '[data-testid="stFileUploader"]')), "the upload-size message")
    assert f"up to {MAX_UPLOAD_MB} MB" in page_text(browser)
    assert_serving(server)

    # And the page still classifies.
    green, _ = answer_for(browser, write_color_png(tmp_path / "green.png", (0, 255, 0)), len(COLORS))
    assert green == "green"
    assert shot.is_file()


@pytest.mark.browser
def test_camera_picture_is_classified(server, browser, tmp_path):
    """st.camera_input with Chromium's fake camera, whose test pattern is green."""
    from selenium.webdriver.common.by import By

    open_page(browser, server)
    select_model(browser, COLORS_NAME)
    choose_source(browser, "Camera")
    # The button is enabled once the (fake) camera streams.
    def enabled(d):
        return next((b for b in d.find_elements(By.CSS_SELECTOR, TAKE_PHOTO) if b.is_enabled()), None)

    button = wait(browser, enabled, "the camera's Take Photo button")
    time.sleep(0.5)  # let a few frames through so the picture is not the first, still black, one
    button.click()
    wait(browser, lambda d: len(texts(d, TOP5_BARS)) == len(COLORS) and texts(d, METRIC) and idle(d),
         "the answer for the camera picture")
    screenshot(browser, tmp_path, "ui-camera")
    assert texts(browser, TOP_LABEL)[0] == "green", texts(browser, TOP5_BARS)
    captions = texts(browser, '[data-testid="stCaptionContainer"]')
    assert any(re.fullmatch(r"camera\.jpg · \d+×\d+", t) for t in captions), captions


@pytest.mark.browser
def test_a_broken_model_gets_a_message_and_the_others_still_work(server, browser, tmp_path):
    open_page(browser, server)
    click_model(browser, BROKEN_NAME)
    def refused(d):
        return any("Cannot use the model" in t for t in texts(d, ERROR)) and idle(d)

    wait(browser, refused, "the broken model's message")
    message = next(t for t in texts(browser, ERROR) if "Cannot use the model" in t)
    screenshot(browser, tmp_path, "ui-broken-model")
    assert BROKEN_NAME in message and "Traceback" not in page_text(browser)
    assert_serving(server)

    select_model(browser, COLORS_NAME)
    red, _ = answer_for(browser, write_color_png(tmp_path / "red.png", (0, 0, 255)), len(COLORS))
    assert red == "red"


# --- memory under a burst of big uploads ---------------------------------------------------------
BURST_TABS = 6
BURST_SIDE = 7000  # 49 Mpx, just under the default 50 Mpx cap: about 147 MB of BGR pixels each
PAGE_MEMORY_LIMIT_MB = 800


def process_tree(pid: int) -> list:
    """`pid` and its descendants, read from /proc."""
    children: dict = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_big_png(path: Path, side: int, bgr) -> Path:
    """A plain-coloured side x side PNG, written row by row (small on disk, side*side*3 bytes decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes(bgr[::-1]) * side  # filter byte + RGB pixels
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.mark.browser
def test_a_burst_of_49_mpx_uploads_stays_under_800_mb(server, browser, tmp_path):
    """Six visitors upload a 49 Mpx photo at the same moment: the page answers all six, and the server's
    peak resident memory (every process of `edgevision ui`, peaks reset first) stays under the limit."""
    big = write_big_png(tmp_path / "big_red.png", BURST_SIDE, (0, 0, 255))
    assert big.stat().st_size < MAX_UPLOAD_MB * 1024 * 1024
    tabs = [browser.current_window_handle]
    for _ in range(BURST_TABS - 1):
        browser.switch_to.new_window("tab")
        tabs.append(browser.current_window_handle)
    for tab in tabs:
        browser.switch_to.window(tab)
        open_page(browser, server)
        select_model(browser, COLORS_NAME)
    pids = process_tree(server.proc.pid)
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := current RSS, so the peak is this burst's
    for tab in tabs:  # as fast as the driver can: the uploads overlap on the server
        browser.switch_to.window(tab)
        upload(browser, big)
    labels = []
    for tab in tabs:
        browser.switch_to.window(tab)
        wait(browser, lambda d: any(t.startswith(f"{big.name} · {BURST_SIDE}") for t in texts(d, IMAGE_CAPTION))
             and texts(d, TOP_LABEL) and idle(d), f"the answer in tab {tab}")
        labels.append(texts(browser, TOP_LABEL)[0])
    peaks = {pid: peak_rss_mb(pid) for pid in pids if Path(f"/proc/{pid}").exists()}
    peak = sum(peaks.values())
    print(f"peak RSS per process (MB): {peaks}")
    print(f"peak RSS of the page's processes during {BURST_TABS} uploads of {BURST_SIDE}x{BURST_SIDE}: {peak:.0f} MB")
    assert labels == ["red"] * BURST_TABS
    assert peak < PAGE_MEMORY_LIMIT_MB, f"the page peaked at {peak:.0f} MB"
    assert_serving(server)
    for tab in tabs[1:]:
        browser.switch_to.window(tab)
        browser.close()
    browser.switch_to.window(tabs[0])
