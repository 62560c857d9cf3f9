"""What people see: the single self-contained page served at ``/`` (the "waking up" card it shows
while a stream has no frames is ``zmqcam.image.cards.waiting_card``).

The page has no external assets (it works offline, on a camera LAN without internet): the panorama
plays as H.264 from ``/stream.mp4`` through Media Source Extensions (``zmqcam/video/mse_player.js``,
package data, inlined here) when the browser can play the stream's codec, and as the MJPEG
``/stream`` in an ``<img>`` otherwise; a button shows which one is in use and switches to the other
(``?mode=mjpeg`` in the address keeps MJPEG). Each camera is an MJPEG ``<img>``, and the status
table is rebuilt from ``/status`` once a second. Browsers allow only 6 connections per host over
HTTP/1.1 and every stream holds one for good, so beyond ``MAX_CAMERA_STREAMS`` cameras the page
refreshes camera snapshots instead of streaming them, which keeps a connection free for ``/status``.
"""

from __future__ import annotations

import html
import importlib.resources

from zmqcam.config import Config

#: the browser side of /stream.mp4, shipped as package data
PLAYER_JS = importlib.resources.files("zmqcam.video").joinpath("mse_player.js")

#: camera tiles stream (MJPEG) up to this many cameras; beyond it they show refreshed snapshots
MAX_CAMERA_STREAMS = 4
#: the frame rate the page asks for per camera tile (the panorama is shown at full rate)
CAMERA_TILE_FPS = 5


def render_page(config: Config) -> str:
    cameras = [cam.name for cam in config.camera]
    stream_cameras = len(cameras) <= MAX_CAMERA_STREAMS
    tiles = []
    for name in cameras:
        esc = html.escape(name)
        if stream_cameras:
            source = f'data-src="stream/{esc}" data-fps="{CAMERA_TILE_FPS}"'
        else:
            source = f'data-snapshot="snapshot/{esc}.jpg"'
        tiles.append(
            f'<figure><img class="cam" id="cam-{esc}" alt="{esc}" {source}><figcaption>{esc}</figcaption></figure>'
        )
    pano = (
        '<section><h2>Panorama <button id="mode" type="button" title="switch between H.264 and MJPEG">'
        "starting</button></h2>"
        '<video id="pano-video" muted autoplay playsinline style="display:none"></video>'
        '<img id="pano" alt="panorama" style="display:none"></section>'
        if config.stitch.enabled
        else ""
    )
    # the player's source is ours, but a "</script>" in it would still end the page's script early
    player = PLAYER_JS.read_text(encoding="utf-8").replace("</", "<\\/")
    return _PAGE.format(pano=pano, tiles="\n".join(tiles), player=player)


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>zmqcam</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1rem; background: #15171a; color: #dde; }}
h1 {{ font-size: 1.3rem; margin: 0 0 .5rem; }}
h2 {{ font-size: 1rem; margin: 1rem 0 .4rem; color: #aab; }}
img, video {{ max-width: 100%; display: block; background: #222; }}
#mode {{ font-size: .8rem; margin-left: .6rem; background: #2a2d33; color: #dde; border: 1px solid #555;
  border-radius: .3rem; cursor: pointer; }}
.cams {{ display: flex; flex-wrap: wrap; gap: .6rem; }}
.cams img {{ width: 320px; }}
figure {{ margin: 0; }}
figcaption {{ font-size: .85rem; color: #99a; }}
table {{ border-collapse: collapse; font-variant-numeric: tabular-nums; }}
th, td {{ padding: .2rem .7rem; border-bottom: 1px solid #333; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.live {{ color: #7d7; }} .asleep, .unknown {{ color: #889; }} .connecting {{ color: #dd7; }}
.no-signal {{ color: #f66; }}
#summary {{ color: #99a; font-size: .9rem; }}
</style>
</head>
<body>
<h1>zmqcam</h1>
{pano}
<section><h2>Cameras</h2><div class="cams">
{tiles}
</div></section>
<section><h2>Status</h2>
<table id="status">
<thead><tr><th>stream</th><th>state</th><th>fps</th><th>last frame (s)</th><th>reconnects</th>
<th>decode errors</th><th>drops</th><th>viewers</th></tr></thead>
<tbody></tbody>
</table>
<p id="summary">loading status...</p>
</section>
<script>
{player}
</script>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token");
function url(path, params) {{
  const u = new URL(path, location.href);
  u.search = "";
  if (token) u.searchParams.set("token", token);
  for (const [k, v] of Object.entries(params || {{}})) u.searchParams.set(k, v);
  return u.toString();
}}
// (Re)open every MJPEG <img>. A stream that ends (the bridge restarted) leaves the last frame on
// screen and fires no reliable event, so refresh() below calls this again when it sees the bridge
// come back; the t parameter makes the browser open a new connection instead of reusing the image.
function openStreams() {{
  for (const img of document.querySelectorAll("img[data-src]")) {{
    const params = img.dataset.fps ? {{fps: img.dataset.fps}} : {{}};
    img.src = url(img.dataset.src, {{...params, t: Date.now()}});
  }}
}}
// the panorama: H.264 through MSE when this browser can play it, else MJPEG; the button says which
// and switches (the choice stays in the address, so a reload keeps it)
const modeButton = document.getElementById("mode");
let player = null;
function startPlayer() {{
  if (!modeButton) return;
  if (player) player.stop();
  const force = new URLSearchParams(location.search).get("mode") === "mjpeg" ? "mjpeg" : "";
  player = ZmqcamPlayer.start({{
    video: document.getElementById("pano-video"),
    img: document.getElementById("pano"),
    mp4: url("stream.mp4"),
    mjpeg: url("stream", {{t: Date.now()}}),
    force,
    onmode: (m) => {{
      modeButton.dataset.mode = m;
      modeButton.textContent = m === "mse" ? "H.264 (MSE)" : "MJPEG";
    }},
  }});
  window.zmqcamPlayer = player;
}}
if (modeButton) modeButton.addEventListener("click", () => {{
  const address = new URL(location.href);
  if (player && player.state.mode === "mse") address.searchParams.set("mode", "mjpeg");
  else address.searchParams.delete("mode");
  history.replaceState(null, "", address);
  startPlayer();
}});
startPlayer();
openStreams();
const snapshots = document.querySelectorAll("img[data-snapshot]");
function refreshSnapshots() {{
  for (const img of snapshots) img.src = url(img.dataset.snapshot, {{t: Date.now()}});
}}
if (snapshots.length) {{ refreshSnapshots(); setInterval(refreshSnapshots, 2000); }}

function cell(row, text, cls) {{
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "-" : String(text);
  if (cls) td.className = cls;
}}
function render(s) {{
  const body = document.querySelector("#status tbody");
  body.replaceChildren();
  for (const [name, c] of Object.entries(s.cameras)) {{
    const row = body.insertRow();
    row.dataset.stream = name;
    cell(row, name);
    cell(row, c.state, c.state.replace(" ", "-"));
    cell(row, c.fps);
    cell(row, c.last_frame_age);
    cell(row, c.reconnects);
    cell(row, c.decode_errors);
    cell(row, c.drops);
    cell(row, c.http.clients);
  }}
  const p = s.stitcher;
  if (p.state !== "disabled") {{
    const row = body.insertRow();
    row.dataset.stream = "pano";
    cell(row, "panorama");
    cell(row, p.state, p.state.replace(" ", "-"));
    cell(row, p.fps);
    cell(row, p.spread_ms === null ? null : "spread " + p.spread_ms + " ms");
    cell(row, null); cell(row, null); cell(row, null);
    cell(row, p.http.clients);
  }}
  const h = s.http;
  document.getElementById("summary").textContent =
    `HTTP clients ${{h.clients}} of ${{h.max_clients}}, frames sent ${{h.frames_sent}}, ` +
    `skipped (slow viewer or fps cap) ${{h.frames_skipped}}, dropped stalled viewers ${{h.dropped}}, ` +
    `bad requests ${{h.bad_requests}}; subscribed: ${{s.subscriptions.join(", ") || "nothing"}}`;
}}
let bridgeDown = false;
let bridgeUptime = 0;
async function refresh() {{
  try {{
    const r = await fetch(url("status"), {{cache: "no-store"}});
    if (!r.ok) throw new Error("HTTP " + r.status);
    const s = await r.json();
    // back after a failed poll, or restarted between two polls (its uptime went down)
    if (bridgeDown || s.http.uptime < bridgeUptime) {{
      openStreams();
      // MSE reconnects by itself; an MJPEG <img> keeps its last frame until given a new URL
      const pano = document.getElementById("pano");
      if (player && player.state.mode === "mjpeg") pano.src = url("stream", {{t: Date.now()}});
    }}
    bridgeDown = false;
    bridgeUptime = s.http.uptime;
    render(s);
  }} catch (e) {{
    bridgeDown = true;
    document.getElementById("summary").textContent = "status unavailable: " + e.message;
  }}
}}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
"""
