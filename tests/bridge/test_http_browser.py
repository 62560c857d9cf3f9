"""The page at ``/`` in a real headless browser (Debian chromium + chromedriver)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import requests

from tests.helpers import Children, wait_for
from zmqcam.bridge import read_announce, run_bridge
from zmqcam.config import Config
from zmqcam.grabber import run_grabber
from zmqcam.stitcher import run_stitcher


def element_image(element: Any) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(element.screenshot_as_png, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image.astype(np.int16)


def test_page_shows_the_live_panorama_and_fills_the_status_table(
    make_config: Callable[..., Config], children: Children, browser: Any
) -> None:
    """The page's panorama <img> shows a moving picture (two screenshots differ), camera tiles show
    camera frames, and the status table fills in from /status without a reload; no external assets.
    When the bridge is killed and restarted, the open page reconnects its streams by itself."""
    from selenium.webdriver.common.by import By

    config = make_config(cameras=2, camera={"fps": 10, "idle_timeout": 1.0}, http={"port": 0})
    for cam in config.camera:
        children.start(run_grabber, config, cam.name)
    children.start(run_stitcher, config)
    bridge = children.start(run_bridge, config)
    info = wait_for(lambda: read_announce(config.run_dir), 30, message="the bridge to listen")
    url = f"http://127.0.0.1:{info['port']}"

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

    first = element_image(pano)
    time.sleep(1.0)
    second = element_image(pano)
    assert first.shape == second.shape and first.shape[1] > 100
    difference = np.abs(first - second).mean()
    assert difference > 0.5, f"the panorama did not change ({difference:.2f})"
    assert first.std() > 20, "the panorama looks like a flat card, not a picture"
    summary = browser.find_element(By.ID, "summary").text
    assert "HTTP clients" in summary and "pano jpeg" in summary

    # the bridge dies and the supervisor starts a new one on the same port: the open page notices
    # (its status poll fails, then works again) and reopens its streams without a reload
    os.kill(bridge.pid, signal.SIGKILL)
    bridge.join(5)
    (config.run_dir / "bridge.json").unlink(missing_ok=True)
    same_port = config.model_copy(update={"http": config.http.model_copy(update={"port": info["port"]})})
    children.start(run_bridge, same_port)
    wait_for(lambda: read_announce(config.run_dir), 30, message="the new bridge to listen")

    def streams_reopened() -> bool:
        status = requests.get(url + "/status", timeout=5).json()
        return status["http"]["streams"].get("pano", 0) >= 1 and status["cameras"]["cam0"]["http"]["clients"] >= 1

    wait_for(streams_reopened, 20, interval=0.2, message="the page to reopen its streams on the new bridge")
    before = element_image(pano)
    time.sleep(1.0)
    assert np.abs(before - element_image(pano)).mean() > 0.5, "the panorama froze after the bridge restart"
