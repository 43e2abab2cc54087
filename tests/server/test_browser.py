"""The web page in a real browser: Debian's chromium, driven by Selenium through
/usr/bin/chromedriver, against the real `asl-serve` on loopback, with a fake camera that
plays a signing clip (the real webcam clip from ../shared when present, else a synthetic
one). Screenshots land in the pytest temp folder (`screenshots/`), and also in
$ASL_PAGE_SCREENSHOTS as page-NAME.png when it is set (how docs/img/ is made).

Selenium Manager never runs: the driver and the browser are given by path, so nothing is
downloaded. CI installs both (`.ci/run`); elsewhere the tests skip with the reason.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from featurestore import open_store
from featurestore.extract import ClipExtractor, synthesize
from tests.processes import free_port, stop
from tests.server.builders import build_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
WEBCAM_CLIP = Path(__file__).resolve().parents[2].parent / "shared/data/webcam/signing_webcam.mp4"
KEY = "browser-key"
T = 8
WAIT = 180  # seconds for any one thing to appear (two shared cores, MediaPipe on each frame)
DOCS_SHOTS = os.environ.get("ASL_PAGE_SCREENSHOTS")

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        "chromium and chromium-driver are not installed "
        "(apt-get install -y chromium chromium-driver; .ci/run does)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


def to_y4m(src: Path, dst: Path, width: int = 360, fps: int = 30) -> Path:
    """Chromium's fake camera plays raw YUV4MPEG2 (4:2:0); it loops the file."""
    import av

    with av.open(str(src)) as clip, av.open(str(dst), "w", format="yuv4mpegpipe") as out:
        frames = list(clip.decode(video=0))
        height = round(frames[0].height * width / frames[0].width / 2) * 2
        stream = out.add_stream("rawvideo", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            small = frame.reformat(width=width, height=height, format="yuv420p")
            small.pts = None
            out.mux(stream.encode(small))
        out.mux(stream.encode())
    return dst


def tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A store populated from synthetic clips (and the real webcam clip when present), an
    untrained checkpoint with an eval report beside it, and asl-serve on loopback."""
    root = tmp_path_factory.mktemp("browser")
    manifest = synthesize(root / "data", classes=6, per_class=4, frames=16, size=(96, 96))
    rows = list(csv.DictReader(manifest.open()))
    if WEBCAM_CLIP.exists():
        shutil.copy(WEBCAM_CLIP, root / "data" / "clips" / "webcam.mp4")
        gloss = rows[0]["gloss"]
        rows.append(
            {"video_id": "webcam", "path": "clips/webcam.mp4", "gloss": gloss, "split": "test"}
        )
    with manifest.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    store = root / "store.zarr"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [tool("featurestore"), "populate", "--store", str(store), "--manifest", str(manifest),
         "--encoder", "tiny-random", "--num-frames", str(T), "--device", "cpu", "--workers", "1"],
        check=True, env=env, capture_output=True, timeout=WAIT,
    )  # fmt: skip
    schema = open_store(str(store)).schema
    assert schema.encoder == ClipExtractor("tiny-random", num_frames=T).fingerprint
    ckpt = build_checkpoint(root / "run" / "best.pt", schema)
    subprocess.run(
        [tool("asl-eval"), "--store", str(store), "--checkpoint", str(ckpt), "--split", "test",
         "--out", str(root / "run" / "eval")],
        check=True, env=env, capture_output=True, timeout=WAIT,
    )  # fmt: skip
    clip = WEBCAM_CLIP if WEBCAM_CLIP.exists() else root / "data" / rows[0]["path"]
    camera = to_y4m(clip, root / "camera.y4m")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [tool("asl-serve"), "--store", str(store), "--checkpoint", str(ckpt), "--port",
         str(port), "--api-key", KEY, "--max-streams", "2", "--stream-every", "2",
         # An untrained model: any window may hold a sign, with hands in view or not.
         "--spot-min-score", "0", "--spot-min-hands", "0"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        wait_ready(proc, base, root / "server.log")
        shots = root / "screenshots"
        shots.mkdir()
        yield {"base": base, "camera": camera, "root": root, "shots": shots,
               "videos": len(rows), "real": WEBCAM_CLIP.exists(), "classes": len(schema.labels)}  # fmt: skip
    finally:
        stop(proc, timeout=20)
        log.close()


def wait_ready(proc: subprocess.Popen, base: str, log_path: Path) -> None:
    """Until asl-serve answers /readyz with its upload encoder loaded (or has died)."""
    deadline = time.monotonic() + WAIT
    while True:
        assert proc.poll() is None, log_path.read_text()[-2000:]
        try:
            if httpx.get(f"{base}/readyz", timeout=2).json().get("upload") == "ready":
                return
        except (httpx.HTTPError, ValueError):
            pass
        assert time.monotonic() < deadline, "asl-serve did not become ready"
        time.sleep(0.3)


def new_browser(site, name: str, camera: bool = True):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1280,1000",
        f"--user-data-dir={site['root'] / ('profile-' + name)}",
    ):  # fmt: skip
        options.add_argument(flag)
    if camera:
        options.add_argument("--use-fake-ui-for-media-stream")
        options.add_argument("--use-fake-device-for-media-stream")
        options.add_argument(f"--use-file-for-fake-video-capture={site['camera']}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    return driver


@pytest.fixture(scope="module")
def browser(site):
    driver = new_browser(site, "main")
    try:
        driver.get(site["base"] + "/")
        driver.find_element(By.ID, "api-key").send_keys(KEY)
        driver.find_element(By.ID, "key-form").submit()
        until(driver, lambda d: "videos" in d.find_element(By.ID, "server-status").text)
        yield driver
    finally:
        driver.quit()


def until(driver, condition, timeout: float = WAIT, why=lambda d: ""):
    """Wait for `condition`; on timeout the message says what the page showed (`why`)."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25).until(condition)
    except TimeoutException:
        error = driver.find_element(By.ID, "error").text
        raise AssertionError(f"timed out; page error: {error!r}; {why(driver)}") from None


def shot(driver, site, name: str) -> Path:
    """The whole page, not only the window (DevTools: beyond the viewport)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    png = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path = site["shots"] / f"{name}.png"
    path.write_bytes(base64.b64decode(png["data"]))
    if DOCS_SHOTS:
        shutil.copy(path, Path(DOCS_SHOTS) / f"page-{name}.png")
    return path


def tab(driver, name: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'nav button[data-tab="{name}"]').click()


@pytest.fixture(scope="module")
def recorded(browser, site):
    """Record once from the fake camera; the tests below look at what came back."""
    tab(browser, "try")
    Select(browser.find_element(By.ID, "record-seconds")).select_by_visible_text("2")
    browser.find_element(By.ID, "record").click()
    bars = until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#try-bars .bar"))
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#try-frames canvas")) == T)
    shot(browser, site, "try")
    return bars


def test_the_page_records_and_shows_the_top_5_as_bars(browser, recorded):
    assert "recorded" in browser.find_element(By.ID, "record-state").text
    assert len(recorded) == 5
    widths = [b.find_element(By.CSS_SELECTOR, ".fill").get_attribute("style") for b in recorded]
    assert all("width" in w for w in widths)
    timings = browser.find_element(By.ID, "try-timings").text
    for stage in ("decode", "landmarks", "encoder", "model"):
        assert stage in timings


OVERLAY_DIFF = """
const done = arguments[arguments.length - 1];
const canvases = [...document.querySelectorAll('#try-frames canvas')];
Promise.all(canvases.map((c) => new Promise((resolve) => {
  const img = new Image();
  img.onload = () => {
    const plain = document.createElement('canvas');
    plain.width = c.width; plain.height = c.height;
    const p = plain.getContext('2d');
    p.drawImage(img, 0, 0);
    const a = p.getImageData(0, 0, c.width, c.height).data;
    const b = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < a.length; i += 4) if (a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2]) n++;
    resolve({ differ: n, parts: c.dataset.parts });
  };
  img.src = c.dataset.frame;
}))).then(done);
"""


def test_the_landmark_overlay_is_drawn_where_mediapipe_found_parts(browser, recorded, site):
    frames = browser.execute_async_script(OVERLAY_DIFF)
    assert len(frames) == T
    for f in frames:  # nothing found: the plain frame, pixel for pixel
        if not f["parts"]:
            assert f["differ"] == 0, f
    if not site["real"]:
        pytest.skip(f"{WEBCAM_CLIP} is absent: MediaPipe finds no signer in the synthetic clip")
    found = [f for f in frames if f["parts"]]
    assert found, "MediaPipe found nobody in the real signing clip"
    assert all(f["differ"] > 100 for f in found), frames


def long_clip(src: Path, dst: Path, times: int = 3, width: int = 240) -> Path:
    """`src` `times` over with half a second's rest (the signer held still) on either side
    of each: a recording of several signs. WebM (VP8) where PyAV writes it: chromium plays
    it."""
    import av
    import numpy as np
    from PIL import Image

    from featurestore.extract import iter_frames, write_video

    sign = []
    for frame in iter_frames(src):
        image = Image.fromarray(frame)
        height = round(image.height * width / image.width / 2) * 2
        sign.append(np.asarray(image.resize((width, height))))
    frames = []
    for _ in range(times):
        frames += [sign[0]] * 15 + sign + [sign[-1]] * 15
    codec = "libvpx" if "libvpx" in av.codecs_available else "libx264"
    out = dst.with_suffix(".webm" if codec == "libvpx" else ".mp4")
    return write_video(out, np.stack(frames), fps=30, codec=codec)


def test_a_long_video_gets_its_signs_on_a_timeline_that_seeks_it(browser, site):
    tab(browser, "try")
    clip = WEBCAM_CLIP if site["real"] else next((site["root"] / "data" / "clips").glob("*.mp4"))
    path = long_clip(clip, site["root"] / "long", times=5)  # over the page's 6 s: spotted
    browser.find_element(By.ID, "file").send_keys(str(path))
    message = browser.find_element(By.ID, "try-message")
    blocks = until(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#try-timeline .segment"),
        why=lambda d: f"message {message.text!r}",
    )
    assert "signs in" in message.text and browser.find_element(By.ID, "try-spot").is_displayed()
    assert not browser.find_element(By.ID, "try-sampled").is_displayed()
    rows = browser.find_elements(By.CSS_SELECTOR, "#try-segments tbody tr")
    assert len(rows) == len(blocks) and all(b.text for b in blocks)
    assert browser.find_elements(By.CSS_SELECTOR, "#try-timeline .axis span")
    target = blocks[len(blocks) // 2]
    start = float(target.get_attribute("data-start"))
    target.click()  # plays the video from the sign's start
    now = "return document.getElementById('try-video').currentTime"
    until(browser, lambda d: start - 0.05 <= d.execute_script(now) <= start + 2, 30)
    shot(browser, site, "try-timeline")


def test_a_live_session_receives_predictions_and_a_running_transcript(browser, site):
    tab(browser, "live")
    browser.find_element(By.ID, "live-start").click()
    stats = browser.find_element(By.ID, "live-stats")
    transcript = browser.find_element(By.ID, "live-transcript")

    def live_state(d):
        return f"live state {d.find_element(By.ID, 'live-state').text!r}, stats {stats.text!r}"

    until(browser, lambda d: int(stats.get_attribute("data-predictions") or 0) >= 3, why=live_state)
    shot(browser, site, "live")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#live-bars .bar")) == 5
    hands = browser.find_element(By.ID, "live-hands").text
    assert "left hand" in hands and "right hand" in hands
    assert "window" in stats.text and "dropped" in stats.text
    # Signs the spotter found, as they end, in a transcript under the bars.
    until(
        browser, lambda d: int(transcript.get_attribute("data-segments") or 0) >= 3, why=live_state
    )
    words = browser.find_elements(By.CSS_SELECTOR, "#live-transcript .word")
    assert len(words) >= 3 and all(w.text for w in words)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#live-transcript .word.new")) == 1
    shot(browser, site, "live-transcript")
    browser.find_element(By.ID, "live-stop").click()
    until(browser, lambda d: d.find_element(By.ID, "live-start").is_enabled(), 30, live_state)
    assert browser.find_element(By.ID, "live-state").text == "stopped"


def test_the_store_browser_lists_the_videos_and_opens_one(browser, site):
    tab(browser, "browse")
    shown = min(site["videos"], 20)  # the page's page size
    rows = until(
        browser,
        lambda d: (
            (r := d.find_elements(By.CSS_SELECTOR, "#browse-rows tr")) and len(r) == shown and r
        ),
    )
    assert browser.find_element(By.ID, "browse-page").text == f"1-{shown} of {site['videos']}"
    shot(browser, site, "browse")
    first = rows[0].get_attribute("data-video-id")
    if site["videos"] > shown:
        browser.find_element(By.ID, "browse-next").click()
        page2 = f"{shown + 1}-{site['videos']} of {site['videos']}"
        until(browser, lambda d: d.find_element(By.ID, "browse-page").text == page2, 30)
    target = "webcam" if site["real"] else first
    browser.find_element(By.ID, "browse-q").send_keys(target)  # search, then open it
    until(browser, lambda d: d.find_element(By.ID, "browse-page").text == "1-1 of 1", 30)
    browser.find_element(By.CSS_SELECTOR, f'#browse-rows tr[data-video-id="{target}"]').click()
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#video-bars .bar")) == 5)
    assert target in browser.find_element(By.ID, "video-title").text
    assert "true gloss" in browser.find_element(By.ID, "video-truth").text
    cells = browser.find_elements(By.CSS_SELECTOR, "#video-mask td")
    assert len(cells) == T * 3
    meta = json.loads(browser.find_element(By.ID, "video-meta").text)
    assert meta["video_id"] == target and "path" in meta["source"]
    time.sleep(0.6)  # a few animation frames
    shot(browser, site, "video")
    # Search narrows the list.
    browser.find_element(By.ID, "video-back").click()
    browser.find_element(By.ID, "browse-q").clear()
    browser.find_element(By.ID, "browse-q").send_keys("zzz-none")
    until(browser, lambda d: d.find_element(By.ID, "browse-page").text == "no videos", 30)


def test_the_model_page_shows_metrics_and_the_confusion_matrix(browser, site):
    tab(browser, "model")
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#confusion tr"))
    assert "val_top1" in browser.find_element(By.ID, "model-info").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#confusion tr")) == site["classes"] + 1
    assert "top-1" in browser.find_element(By.ID, "report-message").text
    shot(browser, site, "model")


def test_a_wrong_api_key_shows_the_error_not_a_blank_page(site):
    driver = new_browser(site, "wrong-key")
    try:
        driver.get(site["base"] + "/")
        error = driver.find_element(By.ID, "error")
        until(driver, lambda d: error.is_displayed(), 30)
        assert "missing X-API-Key" in error.text
        driver.find_element(By.ID, "api-key").send_keys("not-the-key")
        driver.find_element(By.ID, "key-form").submit()
        until(driver, lambda d: "wrong API key" in error.text, 30)
        shot(driver, site, "wrong-key")
    finally:
        driver.quit()


def test_with_writes_off_the_teach_tab_says_how_to_turn_them_on(browser):
    tab(browser, "teach")
    notice = browser.find_element(By.ID, "teach-off")
    until(browser, lambda d: notice.is_displayed(), 30)
    assert "--allow-writes" in notice.text and "asl-serve --store" in notice.text
    assert not browser.find_element(By.ID, "teach-record").is_enabled()
    assert not browser.find_element(By.ID, "teach-train").is_enabled()
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#teach-glosses tr[data-gloss]"), 30)


def test_the_page_raised_no_javascript_errors(browser):
    """Runs after the others on the same page: uncaught errors are in the console."""
    errors = [
        e["message"]
        for e in browser.get_log("browser")
        if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]
    ]
    assert errors == []


def test_no_camera_and_an_undecodable_file_get_clear_messages(site):
    driver = new_browser(site, "no-camera", camera=False)
    try:
        driver.get(site["base"] + "/")
        driver.find_element(By.ID, "api-key").send_keys(KEY)
        driver.find_element(By.ID, "key-form").submit()
        message = driver.find_element(By.ID, "try-message")
        driver.find_element(By.ID, "record").click()
        until(driver, lambda d: "camera" in message.text.lower(), 30)
        assert any(w in message.text for w in ("No camera", "denied", "cannot start")), message.text
        bad = site["root"] / "notes.mp4"
        bad.write_text("this is not a video")
        driver.find_element(By.ID, "file").send_keys(str(bad))
        until(driver, lambda d: "Cannot decode" in message.text, 60)
        assert "not a decodable video" in message.text
        shot(driver, site, "undecodable")
    finally:
        driver.quit()
