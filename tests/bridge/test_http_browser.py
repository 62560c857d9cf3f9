"""The page at ``/`` in a real headless browser (Debian chromium + chromedriver)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import requests

from tests.helpers import Daemon, wait_for, wait_running, write_config
from zmqcam.bridge import read_announce
from zmqcam.config import load_config
from zmqcam.names import BRIDGE, STITCHER


def element_image(element: Any) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(element.screenshot_as_png, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image.astype(np.int16)


def moving(browser: Any, element: Any, timeout: float = 15.0) -> None:
    """The element's picture changes twice in a row (live frames, not one late frame and then a
    freeze), each change waited for with a deadline."""
    for change in (1, 2):
        before = element_image(element)

        def changed(before: np.ndarray = before) -> bool:
            after = element_image(element)
            return after.shape == before.shape and float(np.abs(after - before).mean()) > 0.5

        wait_for(changed, timeout, interval=0.2, message=f"the picture to change ({change} of 2)")


def test_page_shows_the_live_panorama_and_fills_the_status_table(
    tmp_path: Path, daemons: list[Daemon], browser: Any
) -> None:
    """The page's panorama <img> shows a moving picture, camera tiles show camera frames, and the
    status table fills in from /status without a reload; no external assets. When the bridge
    process is killed (by its pid), the daemon's supervisor starts a new one on the same port and
    the open page reconnects its streams by itself: live frames again, without a reload."""
    from selenium.webdriver.common.by import By

    run_dir = tmp_path / "run"
    path = write_config(tmp_path / "z.toml", run_dir, cameras=2, http=True)
    config = load_config(path)
    d = Daemon(["-c", str(path)], cwd=tmp_path)
    daemons.append(d)
    bridge = wait_running(d, run_dir, [BRIDGE, STITCHER])[BRIDGE]
    url = f"http://127.0.0.1:{config.http.port}"
    wait_for(lambda: read_announce(run_dir), 30, message="the bridge to listen")

    page = requests.get(url + "/", timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text, "the page must work offline"

    browser.get(url + "/?mode=mjpeg")  # the panorama as MJPEG (H.264 through MSE: bridge/test_mp4.py)

    def table_live() -> bool:
        # read the table in one script: the page rebuilds its rows every second
        states = browser.execute_script(
            "const s = {}; for (const r of document.querySelectorAll('#status tbody tr'))"
            " s[r.dataset.stream] = r.cells[1].textContent; return s;"
        )
        return states.get("cam0") == "live" and states.get("cam1") == "live" and states.get("pano") == "running"

    wait_for(table_live, 30, interval=0.2, message="the status table to show live cameras")
    pano = browser.find_element(By.ID, "pano")
    width, height = config.pano_size
    wait_for(lambda: browser.execute_script("return arguments[0].naturalWidth", pano) == width, 10)
    assert browser.execute_script("return arguments[0].naturalHeight", pano) == height
    for cam in config.camera:
        tile = browser.find_element(By.ID, f"cam-{cam.name}")
        wait_for(lambda t=tile: browser.execute_script("return arguments[0].naturalWidth", t) == 640, 10)

    moving(browser, pano)
    assert element_image(pano).std() > 20, "the panorama looks like a flat card, not a picture"
    summary = browser.find_element(By.ID, "summary").text
    assert "HTTP clients" in summary and "pano jpeg" in summary

    # the bridge dies; the supervisor starts a new one on the same port: the open page notices (its
    # status poll fails, then works again) and reopens its streams without a reload
    os.kill(bridge["pid"], signal.SIGKILL)

    def restarted() -> Any:
        entry = d.state(run_dir).get("children", {}).get(BRIDGE, {})
        return entry.get("state") == "running" and entry.get("pid") not in (None, bridge["pid"]) and entry

    entry = wait_for(restarted, 30, interval=0.1, message="the supervisor to restart the bridge")
    assert entry["restarts"] == bridge["restarts"] + 1, entry

    def streams_reopened() -> bool:
        try:
            status = requests.get(url + "/status", timeout=5).json()
        except requests.RequestException:
            return False  # the new bridge is not listening yet
        return status["http"]["streams"].get("pano", 0) >= 1 and status["cameras"]["cam0"]["http"]["clients"] >= 1

    wait_for(streams_reopened, 30, interval=0.2, message="the page to reopen its streams on the new bridge")
    moving(browser, pano)
    assert d.proc.poll() is None
