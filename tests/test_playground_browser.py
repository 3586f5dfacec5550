"""The interactive playground in a real browser: headless Chromium driven by Selenium.

Needs ``selenium`` (PyPI) and Chromium with its driver from the operating system (Debian: ``apt-get install
chromium chromium-driver``); skipped without them, unless FASTOPT_EXPECT_BROWSER=1 (CI), which makes a
missing browser a failure.  Selenium is pointed at the installed driver, so it never downloads one.

FASTOPT_PLAYGROUND_SCREENSHOT=path saves the page after the default run (the README's ``docs/playground.png``).
"""
import importlib.util
import json
import math
import os
import re
import shutil
import time

import numpy as np
import pytest

from fastopt.playground import DEFAULT_OPTIMIZERS, OPTIMIZERS, SURFACES, run_one
from fastopt.playground.plot import COLORS

EXPECTED = os.environ.get("FASTOPT_EXPECT_BROWSER") == "1"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _missing():
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install selenium)"
    if not any(shutil.which(b) for b in BROWSERS):
        return "no Chromium or Chrome found (Debian: apt-get install chromium chromium-driver)"
    if not shutil.which("chromedriver"):
        return "no chromedriver found (Debian: apt-get install chromium-driver)"
    return None


MISSING = _missing()
if MISSING and EXPECTED:
    raise RuntimeError(f"FASTOPT_EXPECT_BROWSER=1 but {MISSING}")
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = next(shutil.which(b) for b in BROWSERS if shutil.which(b))
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, playground_server):
    """The page, freshly loaded and ready."""
    browser.get(playground_server.url())
    wait_for_state(browser, "ready")
    return browser


def wait_for(condition, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def state(driver):
    return driver.find_element("tag name", "body").get_attribute("data-state")


def wait_for_state(driver, *states):
    wait_for(lambda: state(driver) in states, f"the page to be {' or '.join(states)} (it is {state(driver)})")
    return state(driver)


def element(driver, id_):
    return driver.find_element("id", id_)


def type_into(driver, id_, text):
    box = element(driver, id_)
    box.clear()
    box.send_keys(text)


def choose_only(driver, *names):
    for name in OPTIMIZERS:
        box = element(driver, f"use-{name}")
        if box.is_selected() != (name in names):
            box.click()


def readout(driver, name):
    """``(steps, loss, diverged note)`` shown for optimizer ``name``."""
    # read in one script: while the animation runs, the list is redrawn every frame
    status, note = driver.execute_script("""
        const item = document.querySelector(`#readout li[data-optimizer="${arguments[0]}"]`);
        const note = item.querySelector('.diverged');
        return [item.querySelector('.status').textContent, note ? note.textContent : null];""", name)
    match = re.fullmatch(r"Steps: (\d+) \| Loss: (\S+)", status)
    assert match, status
    return int(match.group(1)), float(match.group(2)), note


def click(driver, id_):
    element(driver, id_).click()


def canvas_colors(driver):
    """The set of distinct RGB colours on the canvas."""
    pixels = driver.execute_script("""
        const c = document.getElementById('plot');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);""")
    rgba = np.asarray(pixels, dtype=np.uint8).reshape(-1, 4)
    return {tuple(p) for p in np.unique(rgba[:, :3], axis=0)}


def rgb(hex_color):
    return tuple(int(hex_color[k:k + 2], 16) for k in (1, 3, 5))


def canvas_image(driver):
    return driver.execute_script("return document.getElementById('plot').toDataURL('image/png');")


def close(shown, exact):
    return math.isclose(shown, exact, rel_tol=1e-5, abs_tol=1e-300)


def test_choose_surface_and_learning_rate_then_run(page):
    """The readout is the library's own result, and the paths are drawn in the optimizers' colours."""
    from selenium.webdriver.support.ui import Select

    Select(element(page, "surface")).select_by_value("himmelblau")
    wait_for(lambda: "x^2 + y - 11" in element(page, "formula").text, "the formula of himmelblau")
    choose_only(page, "adam", "momentum")
    type_into(page, "lr-adam", "0.05")
    type_into(page, "steps", "120")
    before = canvas_colors(page)
    click(page, "run")
    assert wait_for_state(page, "done", "error") == "done", element(page, "error").text
    surface = SURFACES["himmelblau"]
    want = {"adam": run_one(surface, "adam", 0.05, 120, surface.start),
            "momentum": run_one(surface, "momentum", surface.lrs["momentum"], 120, surface.start)}
    for name, t in want.items():
        steps, loss, diverged = readout(page, name)
        assert steps == 120 and diverged is None
        assert close(loss, t.final_loss), (name, loss, t.final_loss)
    colors = canvas_colors(page)
    assert len(colors) > 200  # the filled contours
    names = list(OPTIMIZERS)
    for name in want:
        color = rgb(COLORS[names.index(name) % len(COLORS)])
        assert color in colors and color not in before, name
    assert not [e for e in page.get_log("browser") if e["level"] == "SEVERE"]


def test_the_defaults_run_to_the_end(page):
    """The page as it opens (Rosenbrock, the default optimizers and steps) runs without an error or divergence."""
    surface = SURFACES["rosenbrock"]
    click(page, "run")
    assert wait_for_state(page, "done", "error") == "done", element(page, "error").text
    for name in DEFAULT_OPTIMIZERS:
        steps, loss, diverged = readout(page, name)
        assert steps == surface.steps and diverged is None
        assert close(loss, run_one(surface, name, surface.lrs[name], surface.steps, surface.start).final_loss)
    if os.environ.get("FASTOPT_PLAYGROUND_SCREENSHOT"):
        page.save_screenshot(os.environ["FASTOPT_PLAYGROUND_SCREENSHOT"])


def test_pause_step_and_reset(page):
    surface = SURFACES["rosenbrock"]
    choose_only(page, "adam")
    type_into(page, "steps", "5000")
    element(page, "speed").send_keys("\ue012" * 100)  # the slider's lowest speed: one step a frame
    click(page, "run")
    wait_for_state(page, "running")
    click(page, "pause")
    assert wait_for_state(page, "paused", "done") == "paused"
    paused, _, _ = readout(page, "adam")
    time.sleep(0.3)
    assert readout(page, "adam")[0] == paused  # paused is paused
    assert 0 < paused < 5000
    click(page, "step")
    t = run_one(surface, "adam", surface.lrs["adam"], paused + 1, surface.start)
    steps, loss, _ = readout(page, "adam")
    assert steps == paused + 1 and close(loss, t.final_loss)
    click(page, "reset")
    steps, loss, _ = readout(page, "adam")
    assert steps == 0 and close(loss, t.losses[0])
    click(page, "step")
    assert readout(page, "adam")[:2][0] == 1 and close(readout(page, "adam")[1], t.losses[1])


def test_click_sets_the_start_point(page):
    surface = SURFACES["rosenbrock"]
    choose_only(page, "sgd")
    type_into(page, "steps", "3")
    canvas = element(page, "plot")
    from selenium.webdriver.common.action_chains import ActionChains

    assert page.execute_script("return document.getElementById('plot').clientWidth") == 760  # not scaled
    ActionChains(page).move_to_element_with_offset(canvas, 60, 40).click().perform()  # from the centre
    text = element(page, "start-text").text
    x, y = (float(v) for v in re.fullmatch(r"\((\S+), (\S+)\)", text).groups())
    # canvas pixel (380 + 60, 310 + 40) in the plot box x 58..746, y 30..576 over the window [-2, 2] x [-1, 3]
    xmin, xmax, ymin, ymax = surface.window
    pixel = (xmax - xmin) / 688
    assert abs(x - (xmin + (440 - 58) / 688 * (xmax - xmin))) < 2 * pixel
    assert abs(y - (ymax - (350 - 30) / 546 * (ymax - ymin))) < 2 * pixel
    click(page, "run")
    wait_for_state(page, "done")
    steps, loss, _ = readout(page, "sgd")
    assert steps == 3 and close(loss, run_one(surface, "sgd", surface.lrs["sgd"], 3, (x, y)).final_loss)


def test_pause_then_run_resumes(page):
    choose_only(page, "adam")
    type_into(page, "steps", "5000")
    element(page, "speed").send_keys("\ue012" * 100)
    click(page, "run")
    wait_for_state(page, "running")
    click(page, "pause")
    wait_for_state(page, "paused")
    paused = readout(page, "adam")[0]
    click(page, "run")
    wait_for_state(page, "running")
    wait_for(lambda: readout(page, "adam")[0] > paused, "the animation to go on")
    click(page, "pause")
    assert readout(page, "adam")[0] > paused  # from where it was, not from 0 again


def test_an_answer_to_outdated_controls_is_dropped(page):
    """Controls changed while the server computes: that run is not shown (or used for the CSV)."""
    choose_only(page, *OPTIMIZERS)
    type_into(page, "steps", "5000")
    started = time.monotonic()
    run_request(SURFACES["rosenbrock"].name, list(OPTIMIZERS), 5000)  # how long the server takes for it
    took = time.monotonic() - started
    click(page, "run")
    type_into(page, "steps", "7")
    time.sleep(2 * took + 1)  # the outdated answer has come, and was dropped
    assert state(page) == "ready" and "Press Run" in element(page, "readout").text
    click(page, "run")
    wait_for_state(page, "done")
    assert readout(page, "adam")[0] == 7


def test_run_after_pause_while_computing_plays(page):
    """Pause, then Run, pressed before the answer arrives: the last one pressed is what happens."""
    choose_only(page, *OPTIMIZERS)
    type_into(page, "steps", "5000")
    element(page, "speed").send_keys("\ue012" * 100)
    click(page, "run")
    click(page, "pause")
    click(page, "run")
    assert wait_for_state(page, "running", "paused", "done") == "running"
    click(page, "reset")
    assert readout(page, "adam")[0] == 0


def run_request(surface, names, steps):
    from fastopt.playground.server import run_request as run

    return run(json.dumps({"surface": surface, "steps": steps, "optimizers": [{"name": n} for n in names]}))


def test_a_lone_divergence_is_shown(page):
    """With only diverging runs the animation still reaches the step that diverged, and says so."""
    choose_only(page, "sgd")
    type_into(page, "lr-sgd", "50")
    type_into(page, "steps", "100")
    click(page, "run")
    wait_for_state(page, "done")
    surface = SURFACES["rosenbrock"]
    t = run_one(surface, "sgd", 50.0, 100, surface.start)
    steps, loss, note = readout(page, "sgd")
    assert steps == t.diverged_at - 1 and close(loss, t.final_loss)
    assert note and f"DIVERGED at step {t.diverged_at}" in note


def test_divergence_is_shown(page):
    choose_only(page, "sgd", "adam")
    type_into(page, "lr-sgd", "50")
    type_into(page, "steps", "100")
    click(page, "run")
    wait_for_state(page, "done")
    steps, loss, note = readout(page, "sgd")
    surface = SURFACES["rosenbrock"]
    t = run_one(surface, "sgd", 50.0, 100, surface.start)
    assert t.diverged and steps == t.diverged_at - 1 and close(loss, t.final_loss)
    assert note and f"DIVERGED at step {t.diverged_at}" in note
    assert readout(page, "adam")[2] is None


@pytest.mark.parametrize("field, value, message", [
    ("steps", "999999", "steps must be an integer from 1 to 5000, got 999999"),
    ("steps", "1.5", "steps must be an integer from 1 to 5000, got 1.5"),
    ("lr-adam", "-1", "lr of adam must be in (0, 100], got -1.0"),
    ("lr-adam", "abc", "lr of adam must be a number, got ''"),  # a number input reads "" then
    ("beta2-adam", "1.5", "beta of adam must be in [0, 1), got 1.5"),
])
def test_bad_input_shows_the_servers_error(page, field, value, message):
    choose_only(page, "adam")
    type_into(page, field, value)
    click(page, "run")
    assert wait_for_state(page, "error", "done") == "error"
    box = element(page, "error")
    assert box.is_displayed() and message in box.text
    type_into(page, field, {"steps": "10", "lr-adam": "0.1", "beta2-adam": "0.999"}[field])
    click(page, "run")
    assert wait_for_state(page, "done", "error") == "done"
    assert not box.is_displayed()


def test_the_3d_view_is_drawn_and_rotates(page):
    from selenium.webdriver.common.action_chains import ActionChains

    choose_only(page, "adam")
    type_into(page, "steps", "50")
    click(page, "run")
    wait_for_state(page, "done")
    contour = canvas_image(page)
    click(page, "view-3d")
    assert element(page, "view-3d").get_attribute("aria-pressed") == "true"
    seen = canvas_image(page)
    assert seen != contour and len(canvas_colors(page)) > 200
    drag = ActionChains(page).move_to_element(element(page, "plot")).click_and_hold()
    drag.move_by_offset(120, 40).release().perform()
    assert canvas_image(page) != seen  # rotated
    assert element(page, "start-text").text == "(-1.5, 2)"  # dragging in 3-D does not move the start
    click(page, "view-contour")
    assert canvas_image(page) == contour


def test_downloads(page, downloads):
    choose_only(page, "adam", "lion")
    type_into(page, "steps", "20")
    click(page, "download-csv")
    assert "run first" in element(page, "error").text
    click(page, "run")
    wait_for_state(page, "done")
    click(page, "download-csv")
    click(page, "download-png")
    csv_file = downloads / "fastopt-playground-rosenbrock.csv"
    png_file = downloads / "fastopt-playground-rosenbrock-contour.png"
    wait_for(lambda: csv_file.exists() and png_file.exists() and png_file.stat().st_size > 0, "the downloads")
    lines = wait_for(lambda: csv_file.read_text().splitlines() if csv_file.stat().st_size else None, "the CSV")
    assert lines[0] == "optimizer,step,x,y,loss" and len(lines) == 1 + 2 * 21
    assert lines[1].startswith("adam,0,-1.5,2.0,")
    assert wait_for(lambda: png_file.read_bytes()[:8], "the PNG") == b"\x89PNG\r\n\x1a\n"
