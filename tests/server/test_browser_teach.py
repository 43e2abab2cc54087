"""The Teach tab in a real browser (issue 25): `asl-serve --allow-writes` on a store that does
not exist yet, the fake camera playing a signing clip; takes of two glosses recorded in the
tab, a model trained there, and the Try tab predicting with it at once. Shares the browser,
the waits and the screenshots (page-teach.png in $ASL_PAGE_SCREENSHOTS) with
test_browser.py, and skips as it does without chromium."""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest

from featurestore.extract import synthesize
from tests.processes import free_port, stop
from tests.server.test_browser import (
    WEBCAM_CLIP,
    new_browser,
    shot,
    tab,
    to_y4m,
    tool,
    until,
    wait_ready,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

GLOSSES = ("hello", "thanks")
TAKES = 3
EPOCHS = 20


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """asl-serve with writes on a store it creates (landmarks only), uploads on."""
    root = tmp_path_factory.mktemp("teach")
    # A synthetic clip: MediaPipe finds nobody in it, so its takes have no landmarks and
    # are flagged. The real signing clip, where present, gives the other gloss's takes.
    synthesize(root / "data", classes=1, per_class=1, frames=16, size=(96, 96))
    synthetic = next((root / "data" / "clips").glob("*.mp4"))
    blank = to_y4m(synthetic, root / "blank.y4m")
    camera = to_y4m(WEBCAM_CLIP, root / "camera.y4m") if WEBCAM_CLIP.exists() else blank
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = root / "server.log"
    log = log_path.open("wb")
    proc = subprocess_serve(root, port, log)
    try:
        wait_ready(proc, base, log_path)
        shots = root / "screenshots"
        shots.mkdir()
        yield {
            "base": base,
            "camera": camera,
            "blank": blank,
            "real": WEBCAM_CLIP.exists(),
            "root": root,
            "shots": shots,
        }
    finally:
        stop(proc, timeout=20)
        log.close()


def subprocess_serve(root, port, log):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [tool("asl-serve"), "--store", str(root / "mysigns.zarr"), "--allow-writes",
         "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
    )  # fmt: skip


@pytest.fixture(scope="module")
def browser(site):
    driver = new_browser(site, "teach")
    try:
        driver.get(site["base"] + "/")
        until(driver, lambda d: "videos" in d.find_element(By.ID, "server-status").text)
        yield driver
    finally:
        driver.quit()


def text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def record_try(driver) -> None:
    tab(driver, "try")
    Select(driver.find_element(By.ID, "record-seconds")).select_by_visible_text("2")
    driver.execute_script("document.getElementById('try-message').textContent = ''")
    driver.find_element(By.ID, "record").click()


def test_before_any_model_the_try_tab_says_so(browser):
    record_try(browser)
    until(browser, lambda d: "no model yet" in text(d, "try-message"))
    assert browser.find_element(By.ID, "try-message").get_attribute("class") == "error"


def record_takes(driver, gloss: str) -> None:
    box = driver.find_element(By.ID, "teach-gloss")
    box.clear()
    box.send_keys(gloss)
    driver.find_element(By.ID, "teach-takes").clear()
    driver.find_element(By.ID, "teach-takes").send_keys(str(TAKES))
    Select(driver.find_element(By.ID, "teach-seconds")).select_by_visible_text("2")
    driver.find_element(By.ID, "teach-record").click()
    done = f'{TAKES} takes of "{gloss}" stored.'
    until(
        driver, lambda d: text(d, "teach-message") == done, why=lambda d: text(d, "teach-message")
    )
    takes = driver.find_elements(By.CSS_SELECTOR, "#teach-new .take")
    assert len(takes) == TAKES
    for take in takes:  # the clip as recorded, then its frames; a take without hands says so
        assert take.find_elements(By.CSS_SELECTOR, "video.take-preview")
        assert take.find_elements(By.CSS_SELECTOR, "h3 button.delete")
        captions = [c.text for c in take.find_elements(By.CSS_SELECTOR, "figcaption")]
        assert captions and len(take.find_elements(By.TAG_NAME, "canvas")) == len(captions)
        blind = sum("no hands" in c for c in captions)
        warnings = take.find_elements(By.CSS_SELECTOR, ".warning")
        assert bool(warnings) == bool(blind), (captions, [w.text for w in warnings])
        if blind:
            assert str(blind) in warnings[0].text


GLOSS_ROWS = """
return [...document.querySelectorAll('#teach-glosses tr[data-gloss]')]
  .map((r) => [r.dataset.gloss, [...r.cells].map((c) => c.textContent)]);
"""


def gloss_rows(driver) -> dict[str, list[str]]:
    """The glosses table at one moment (it is redrawn after every take and delete)."""
    return dict(driver.execute_script(GLOSS_ROWS))


@pytest.fixture(scope="module")
def taught(browser, site):
    """Three takes of each gloss recorded in the Teach tab, then a model trained there."""
    # The first gloss from a browser whose camera shows nobody.
    other = new_browser({**site, "camera": site["blank"]}, "teach-blank")
    try:
        other.get(site["base"] + "/")
        until(other, lambda d: "videos" in d.find_element(By.ID, "server-status").text)
        tab(other, "teach")
        until(other, lambda d: text(d, "teach-total") == "No takes yet.")
        record_takes(other, GLOSSES[0])
    finally:
        other.quit()
    tab(browser, "teach")
    until(browser, lambda d: gloss_rows(d).get(GLOSSES[0]))
    for gloss in GLOSSES[1:]:
        record_takes(browser, gloss)
    assert {g: r[1:] for g, r in gloss_rows(browser).items()} == {
        g: [str(TAKES), str(TAKES), "no"] for g in GLOSSES
    }  # train, total, in the model
    options = browser.find_elements(By.CSS_SELECTOR, "#teach-gloss-list option")
    assert sorted(o.get_attribute("value") for o in options) == list(GLOSSES)
    browser.find_element(By.ID, "teach-epochs").send_keys(str(EPOCHS))
    browser.find_element(By.ID, "teach-train").click()
    state = lambda d: text(d, "teach-train-state")  # noqa: E731
    until(browser, lambda d: d.find_element(By.ID, "teach-result").is_displayed(), why=state)
    return browser


def test_training_fills_the_progress_bar_and_shows_the_confusion_matrix(taught, site):
    bar = taught.find_element(By.ID, "teach-progress")
    assert bar.get_attribute("data-state") == "done"
    assert bar.get_attribute("value") == bar.get_attribute("max") == str(EPOCHS)
    assert f"epoch {EPOCHS}/{EPOCHS}" in text(taught, "teach-train-state")
    assert not taught.find_element(By.ID, "teach-cancel").is_displayed()
    rows = taught.find_elements(By.CSS_SELECTOR, "#teach-confusion tr")
    assert [r.find_element(By.TAG_NAME, "th").text for r in rows[1:]] == list(GLOSSES)
    counts = [int(c.text or 0) for r in rows[1:] for c in r.find_elements(By.TAG_NAME, "td")]
    assert sum(counts) == 2 * TAKES  # no val takes yet: scored on the train takes
    assert "train takes" in text(taught, "teach-report-message")
    per_class = text(taught, "teach-per-class")
    assert all(g in per_class for g in GLOSSES)
    until(taught, lambda d: all(r[-1] == "yes" for r in gloss_rows(d).values()), 30)
    shot(taught, site, "teach")


def test_the_try_tab_then_predicts_one_of_the_taught_glosses(taught, site):
    assert "2 classes" in text(taught, "server-status")
    record_try(taught)
    until(taught, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#try-bars .bar")) == 2)
    top = taught.find_element(By.CSS_SELECTOR, "#try-bars .bar .gloss").text
    assert top in GLOSSES
    if site["real"]:  # the signer, not the empty frames of the other gloss
        assert top == GLOSSES[1]
    assert "top 5 of 2 classes" in text(taught, "try-message")


def test_a_gloss_opens_to_its_takes_and_one_can_be_deleted(taught):
    tab(taught, "teach")
    until(taught, lambda d: gloss_rows(d))
    taught.find_element(By.CSS_SELECTOR, f'#teach-glosses tr[data-gloss="{GLOSSES[0]}"]').click()
    thumbs = lambda d: d.find_elements(By.CSS_SELECTOR, "#teach-gloss-takes figure")  # noqa: E731
    until(taught, lambda d: len(thumbs(d)) == TAKES, 30)
    victim = thumbs(taught)[0].get_attribute("data-video-id")
    thumbs(taught)[0].find_element(By.CSS_SELECTOR, "button.delete").click()
    until(taught, lambda d: gloss_rows(d)[GLOSSES[0]][-2] == str(TAKES - 1), 30)
    assert victim not in [f.get_attribute("data-video-id") for f in thumbs(taught)]
    assert httpx.get(f"{taught.current_url.rstrip('/')}/v1/videos/{victim}").status_code == 404


def test_the_page_raised_no_javascript_errors(taught):
    errors = [
        e["message"]
        for e in taught.get_log("browser")
        if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]
    ]
    assert errors == []
