"""The MSE player (zmqcam/video/mse_player.js) in real headless Chromium, fed by a real aiohttp server
that encodes and fMP4-muxes the synthetic scene live."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.helpers.video import LiveVideoServer, live_server

#: capture -> display, the issue's bound for what a viewer sees
MAX_LATENCY_S = 0.5


@pytest.fixture
def server() -> Iterator[LiveVideoServer]:
    yield from live_server(fps=15.0, keyint=15)


def player_state(driver: Any) -> dict[str, Any]:
    return driver.execute_script(
        "const v = document.getElementById('video'), i = document.getElementById('mjpeg');"
        "return Object.assign({}, window.player.state, {t: v.currentTime, vw: v.videoWidth, vh: v.videoHeight,"
        " iw: i.naturalWidth, ih: i.naturalHeight, supported: MediaSource.isTypeSupported(arguments[0])});",
        'video/mp4; codecs="avc1.64001f"',
    )


def test_mse_plays_the_live_h264_stream_with_under_half_a_second_of_latency(
    server: LiveVideoServer,
    browser: Any,
) -> None:
    """Chromium supports the stream's codec in MSE; the late-joining page plays (currentTime
    advances, videoWidth is the coded width) and what it shows is less than half a second old
    (capture time of the frame on screen vs the wall clock, per requestVideoFrameCallback)."""
    server.wait_frames(20)  # the page joins a stream in progress
    browser.get(server.url + "/")
    first = wait_for(lambda: (s := player_state(browser))["mode"] == "mse" and s["vw"] > 0 and s, 20, 0.1,
                     "the page to play the stream with MSE")  # fmt: skip
    assert first["supported"], "Chromium's MSE supports H.264 High"
    assert (first["vw"], first["vh"]) == server.encoder.coded_size
    wait_for(lambda: player_state(browser)["t"] > first["t"] + 1.0, 20, 0.1, "currentTime to advance")

    latencies = []
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        state = player_state(browser)
        if state["latency"] is not None:
            latencies.append(state["latency"])
        time.sleep(0.2)
    assert latencies, "requestVideoFrameCallback never reported a frame"
    median = statistics.median(latencies)
    print(f"MSE capture->display latency: median {median * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    assert 0 < median < MAX_LATENCY_S, f"latency {median:.3f} s"
    assert browser.find_element("id", "mode").text == "mse"


def test_page_falls_back_to_mjpeg_when_mse_cannot_play_the_codec(
    server: LiveVideoServer,
    browser: Any,
) -> None:
    """When MediaSource.isTypeSupported says no to the stream's codec, the page shows the MJPEG
    stream instead, and says so."""
    server.wait_frames(2)
    browser.get(server.url + "/?mp4=/stream.mp4%3Fcodec%3Davc1.ff0000")
    state = wait_for(lambda: (s := player_state(browser))["mode"] == "mjpeg" and s["iw"] > 0 and s, 20, 0.1,
                     "the page to fall back to MJPEG")  # fmt: skip
    assert (state["iw"], state["ih"]) == server.size
    assert "cannot play" in state["error"]
    assert browser.find_element("id", "mode").text == "mjpeg"
