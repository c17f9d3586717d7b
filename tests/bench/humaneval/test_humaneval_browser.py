"""bench humaneval in a real browser: headless Chromium (Debian's chromium + chromium-driver)
driven by Selenium opens an invite link, plays both videos, answers pairs by click and by
keyboard; the votes are in the database. `make test-browser` installs the browser and runs it.
"""

import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.bench.humaneval.test_humaneval import make_model

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (make test-browser)"),
]


@pytest.fixture
def served_study(tmp_path):
    from werkzeug.serving import make_server

    from bench.humaneval.server import create_app
    from bench.humaneval.study import invite, prepare_study

    a = make_model(tmp_path, "vcm", 40)
    b = make_model(tmp_path, "turbo", 200)
    study = prepare_study([f"vcm={a}", f"turbo={b}"], tmp_path / "study", seed=5)
    (token,) = invite(study, 1)
    server = make_server("127.0.0.1", 0, create_app(study.root), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield study, f"http://127.0.0.1:{server.server_port}/r/{token}"
    server.shutdown()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def _wait(predicate, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_rater_answers_pairs_by_click_and_keyboard_in_chromium(served_study, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    study, link = served_study
    browser.get(link)
    _wait(lambda: "Which video is better?" in browser.page_source)
    browser.find_element(By.ID, "start").click()
    _wait(lambda: browser.find_element(By.ID, "prompt").text)
    # Both videos load and play (they loop; muted autoplay).
    for side in ("left", "right"):
        _wait(lambda: browser.execute_script(f"const v = document.getElementById('{side}'); return v.readyState >= 2 && v.currentTime > 0;"))
    shot = os.environ.get("BENCH_HUMANEVAL_SCREENSHOT")
    if shot:
        browser.find_element(By.ID, "visual_quality-left").click()
        browser.save_screenshot(shot)
        browser.find_element(By.ID, "visual_quality-left").click()
    assert "vcm" not in browser.page_source and "turbo" not in browser.page_source

    # Pair 1 by clicks.
    first = browser.find_element(By.ID, "prompt").text
    for q, choice in (("visual_quality", "left"), ("text_alignment", "tie"), ("general_preference", "right")):
        browser.find_element(By.ID, f"{q}-{choice}").click()
    browser.find_element(By.ID, "submit").click()
    _wait(lambda: "1 of 6 answered" in browser.find_element(By.ID, "progress").text)
    # Pair 2 by keyboard: arrows answer the highlighted question, Enter submits.
    body = browser.find_element(By.TAG_NAME, "body")
    for key in (Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_DOWN):
        body.send_keys(key)
    body.send_keys(Keys.ENTER)
    _wait(lambda: "2 of 6 answered" in browser.find_element(By.ID, "progress").text)

    db = sqlite3.connect(study.db_path)
    rows = db.execute("SELECT pair, question, choice FROM votes ORDER BY rowid").fetchall()
    assert len(rows) == 6
    by_pair = {}
    for pair, q, c in rows:
        by_pair.setdefault(pair, {})[q] = c
    answers = list(by_pair.values())
    assert answers[0] == {"visual_quality": "left", "text_alignment": "tie", "general_preference": "right"}
    assert answers[1] == {"visual_quality": "right", "text_alignment": "right", "general_preference": "tie"}
    assert study.pair(next(iter(by_pair)))["prompt"] == first

    # On a phone-sized screen the two videos stack instead of shrinking side by side.
    browser.set_window_size(390, 844)
    left, right = (browser.find_element(By.ID, s).rect for s in ("left", "right"))
    assert right["y"] >= left["y"] + left["height"] and left["width"] > 250
