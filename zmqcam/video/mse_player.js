/* zmqcam live player: the H.264 fMP4 stream (one HTTP response, read with fetch) through Media Source
 * Extensions, or the MJPEG stream in an <img> where MSE or the stream's codec is not supported.
 *
 *   const p = ZmqcamPlayer.start({video, img, mp4: "/stream.mp4", mjpeg: "/stream",
 *                                 force: "" | "mjpeg", onmode: m => ..., onlatency: seconds => ...});
 *   p.state  -> {mode: "mse" | "mjpeg" | "", latency, frames, error}      p.stop()
 *
 * The server answers /stream.mp4 with Content-Type `video/mp4; codecs="avc1.PPCCLL"` (the codec of
 * its init segment) and X-Capture-Origin-Ns (the capture time, ns since the epoch, of media time 0):
 * the first says whether this browser can play it, the second gives capture-to-display latency.
 *
 * Latency tricks (after go2rtc's video-rtc.js): the SourceBuffer is fed as bytes arrive, queued
 * only while it is busy; played video is trimmed so the buffer stays short; and the playhead jumps
 * to the live edge when it lags (a tab in the background, a stall) or when the stream jumped ahead
 * (a late join starts at t > 0, a slow viewer is skipped to the next keyframe: both leave gaps); a
 * small lag is shed by playing 10 % faster rather than by seeking, which stutters.
 * No external assets: the bridge inlines this file into its page.
 */
"use strict";

const ZmqcamPlayer = (() => {
  const MAX_LAG = 0.5; // seconds behind the newest buffered frame before jumping to it
  const CATCH_UP_LAG = 0.1; // behind by more than this (but less than MAX_LAG): play a little faster
  const CATCH_UP_RATE = 1.1; // fast enough to catch up in a second or two, too little to notice
  const EDGE = 0.02; // how far before the newest frame's end to land when jumping
  const KEEP = 5; // seconds of already played video kept (seeking back a little stays possible)
  const RETRY_MS = 2000; // reconnect delay after the stream ended or failed

  function mediaSourceClass() {
    return window.ManagedMediaSource || window.MediaSource || null;
  }

  function start(o) {
    const state = { mode: "", latency: null, frames: 0, error: "" };
    const video = o.video;
    const img = o.img;
    let abort = null;
    let stopped = false;
    let retry = 0;

    function setMode(mode) {
      if (state.mode === mode) return;
      state.mode = mode;
      video.style.display = mode === "mse" ? "" : "none";
      img.style.display = mode === "mjpeg" ? "" : "none";
      if (o.onmode) o.onmode(mode);
    }

    function fallback(why) {
      state.error = why;
      if (abort) abort.abort();
      video.removeAttribute("src");
      video.load();
      img.src = o.mjpeg;
      setMode("mjpeg");
    }

    function trackLatency(origin) {
      // requestVideoFrameCallback: the media time of each frame as it is put on screen
      if (!video.requestVideoFrameCallback) return;
      const onframe = (now, meta) => {
        if (stopped || state.mode !== "mse") return;
        state.frames += 1;
        const shown = performance.timeOrigin + (meta.expectedDisplayTime || now);
        state.latency = (shown - (origin + meta.mediaTime * 1000)) / 1000;
        if (o.onlatency) o.onlatency(state.latency);
        video.requestVideoFrameCallback(onframe);
      };
      video.requestVideoFrameCallback(onframe);
    }

    function toLiveEdge(sb) {
      const ranges = sb.buffered;
      if (!ranges.length) return;
      const last = ranges.length - 1;
      const start = ranges.start(last);
      const end = ranges.end(last);
      const t = video.currentTime;
      if (t < start || end - t > MAX_LAG) {
        video.currentTime = Math.max(start, end - EDGE);
      } else {
        // Chrome keeps a few frames of headroom after a seek; a seek to shed them would stutter,
        // a slightly faster pace sheds them smoothly
        video.playbackRate = end - t > CATCH_UP_LAG ? CATCH_UP_RATE : 1;
      }
      if (video.paused) video.play().catch(() => {});
    }

    function trim(sb) {
      const ranges = sb.buffered;
      if (!ranges.length || sb.updating) return;
      const until = video.currentTime - KEEP;
      if (until > ranges.start(0)) sb.remove(ranges.start(0), until);
    }

    async function play() {
      const MS = mediaSourceClass();
      if (!MS) return fallback("this browser has no Media Source Extensions");
      abort = new AbortController();
      const resp = await fetch(o.mp4, { signal: abort.signal, cache: "no-store" });
      if (!resp.ok || !resp.body) throw new Error(`${o.mp4}: HTTP ${resp.status}`);
      const type = resp.headers.get("Content-Type") || "";
      if (!MS.isTypeSupported(type)) return fallback(`MSE cannot play ${type}`);
      const origin = Number(BigInt(resp.headers.get("X-Capture-Origin-Ns") || "0") / 1000000n);

      const ms = new MS();
      const opened = new Promise((resolve) => ms.addEventListener("sourceopen", resolve, { once: true }));
      if (window.ManagedMediaSource && MS === window.ManagedMediaSource) {
        video.disableRemotePlayback = true;
        video.srcObject = ms;
      } else {
        video.src = URL.createObjectURL(ms);
      }
      video.muted = true; // autoplay is allowed for muted video only
      await opened;
      const sb = ms.addSourceBuffer(type);
      sb.mode = "segments"; // place each fragment at its own timestamps
      setMode("mse");
      trackLatency(origin);

      let queue = [];
      sb.addEventListener("updateend", () => {
        if (queue.length) {
          const parts = queue;
          queue = [];
          const merged = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
          let at = 0;
          for (const p of parts) {
            merged.set(p, at);
            at += p.byteLength;
          }
          sb.appendBuffer(merged);
          return;
        }
        toLiveEdge(sb);
        trim(sb);
      });
      video.addEventListener("waiting", () => toLiveEdge(sb));

      const reader = resp.body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done || stopped) break;
        if (sb.updating || queue.length) queue.push(value);
        else sb.appendBuffer(value);
      }
      throw new Error("the stream ended");
    }

    function run() {
      if (stopped) return;
      if (o.force === "mjpeg") return fallback("MJPEG chosen");
      play().catch((err) => {
        if (stopped || state.mode === "mjpeg") return;
        state.error = String(err);
        retry = setTimeout(run, RETRY_MS);
      });
    }

    run();
    return {
      state,
      stop() {
        stopped = true;
        clearTimeout(retry);
        if (abort) abort.abort();
        video.removeAttribute("src");
        video.load(); // releases the MediaSource and its buffered video
        img.removeAttribute("src");
      },
    };
  }

  return { start };
})();
