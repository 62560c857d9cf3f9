"""``GET /metrics``: the rig in Prometheus's exposition format, through ``prometheus_client``.

Nothing is counted twice: the families are built at scrape time by a custom collector from what the
bridge already holds, the status every grabber and the stitcher publish (``zmqcam.bridge.report``
reads them the same way for ``/status``), the bridge's own counters, and the supervisor's process
table in the run directory (restarts per child). The collector lives on a registry of the bridge's
own, never on prometheus_client's global default one (whose process and platform collectors would
describe only the bridge, under names that do not say so).

Conventions: the ``zmqcam_`` prefix, base units (seconds, bytes), counters ending in ``_total`` (the
library adds the suffix), the camera's state as one series per state valued 1 for the current one.
Each process reports its own CPU seconds and resident memory in its status (so a grabber on another
host is covered too); the bridge adds its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from zmqcam.bridge import report
from zmqcam.bridge.report import ProcessTable, publish_status
from zmqcam.bus.status import CAMERA_STATES, NO_SIGNAL, STATUS_DOWN_AFTER, UNKNOWN, process_usage
from zmqcam.names import BRIDGE, MP4_VIEWERS, PANO, STITCHER, grabber_name
from zmqcam.video.push import LIVE as PUSH_LIVE

if TYPE_CHECKING:
    import collections

    from zmqcam.bridge.hub import Hub
    from zmqcam.config import Config


class BridgeState(Protocol):
    """What the collector reads of the bridge (``zmqcam.bridge.server.Bridge``)."""

    config: Config
    hub: Hub
    camera_names: list[str]
    viewers: collections.Counter[str]
    counters: dict[str, int]
    responses: collections.Counter[int]
    processes: ProcessTable


__all__ = ["CONTENT_TYPE", "METRICS_PATH", "STATES", "BridgeState", "Metrics"]

METRICS_PATH = "/metrics"
CONTENT_TYPE = CONTENT_TYPE_LATEST
PREFIX = "zmqcam_"
#: every state a camera is shown in (``zmqcam_camera_state`` has a series for each)
STATES = tuple(dict.fromkeys([*CAMERA_STATES.values(), NO_SIGNAL, UNKNOWN]))

#: camera status field -> (family name, help) of its counters
_CAMERA_COUNTERS = {
    "frames": ("camera_frames", "Frames received from the camera."),
    "bytes": ("camera_bytes", "Bytes of frames received from the camera (its JPEGs, or raw pixels)."),
    "reconnects": ("camera_reconnects", "Connections to the camera that failed or were lost."),
    "timeouts": ("camera_timeouts", "Connects and reads that timed out."),
    "decode_errors": ("camera_decode_errors", "Frames dropped as corrupt or undecodable."),
    "drops": ("camera_drops", "Frames dropped because they came faster than the camera's fps cap."),
    "warmup_frames": ("camera_warmup_frames", "Frames held back after a (re)connect while the sensor settles."),
}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class _RigCollector(Collector):
    """Builds every family from the bridge's state at the moment of the scrape."""

    def __init__(self, bridge: BridgeState) -> None:
        self.bridge = bridge

    def collect(self) -> Iterator[Metric]:
        yield from self._cameras()
        yield from self._stitcher()
        yield from self._http()
        yield from self._processes()
        yield from self._publish()

    # -- cameras

    def _cameras(self) -> Iterator[Metric]:
        bridge = self.bridge
        state = GaugeMetricFamily(
            PREFIX + "camera_state", "The camera's state: 1 for the current one.", labels=["camera", "state"]
        )
        fps = GaugeMetricFamily(PREFIX + "camera_fps", "Frames per second published.", labels=["camera"])
        age = GaugeMetricFamily(
            PREFIX + "camera_last_frame_age_seconds", "Seconds since the newest frame.", labels=["camera"]
        )
        subscribers = GaugeMetricFamily(
            PREFIX + "camera_subscribers", "Subscribers of the camera's topics, by kind.", labels=["camera", "kind"]
        )
        counters = {
            field: CounterMetricFamily(PREFIX + name, text, labels=["camera"])
            for field, (name, text) in _CAMERA_COUNTERS.items()
        }
        for name in bridge.camera_names:
            shown = report.camera_status(bridge.hub, name, bridge.viewers)
            for each in STATES:
                state.add_metric([name, each], 1.0 if shown["state"] == each else 0.0)
            fps.add_metric([name], float(shown["fps"]))
            if shown["last_frame_age"] is not None:
                age.add_metric([name], float(shown["last_frame_age"]))
            for kind, count in shown["subscribers"].items():
                if _number(count) is not None:
                    subscribers.add_metric([name, str(kind)], float(count))
            for field, family in counters.items():
                family.add_metric([name], float(shown.get(field) or 0))
        yield from (state, fps, age, subscribers, *counters.values())

    # -- the stitcher

    def _stitcher(self) -> Iterator[Metric]:
        bridge = self.bridge
        if PANO not in bridge.hub.channels:
            return
        shown = report.stitcher_status(bridge.hub, bridge.viewers)
        body, _ = bridge.hub.status_of(PANO)
        body = body or {}
        yield GaugeMetricFamily(
            PREFIX + "stitcher_running",
            "1 while the stitcher makes panoramas (someone watches), else 0.",
            value=1.0 if shown["state"] == "running" else 0.0,
        )
        yield GaugeMetricFamily(PREFIX + "stitcher_fps", "Panoramas per second.", value=float(shown["fps"]))
        yield GaugeMetricFamily(
            PREFIX + "stitcher_target_fps",
            "The panorama rate the config asks for (the slowest stitched camera's fps).",
            value=bridge.config.pano_fps,
        )
        spread = _number(shown["spread_ms"])
        if spread is not None:
            yield GaugeMetricFamily(
                PREFIX + "stitcher_spread_seconds",
                "Capture-time spread of the cameras in the newest panorama.",
                value=spread / 1000,
            )
        yield GaugeMetricFamily(
            PREFIX + "stitcher_stale_slots", "Panorama slots showing NO SIGNAL.", value=float(len(shown["stale"]))
        )
        yield CounterMetricFamily(PREFIX + "stitcher_panoramas", "Panoramas made.", value=float(shown["panoramas"]))
        yield GaugeMetricFamily(
            PREFIX + "stitcher_h264_encoding",
            "1 while an H.264 encoder runs (someone subscribes to pano h264), else 0.",
            value=1.0 if shown["h264_encoding"] else 0.0,
        )
        yield CounterMetricFamily(
            PREFIX + "stitcher_h264_encoded", "Panoramas encoded to H.264.", value=float(shown["h264_encoded"])
        )
        yield CounterMetricFamily(
            PREFIX + "stitcher_h264_skipped",
            "Panoramas not encoded to H.264 because a newer one replaced them while the encoder was busy.",
            value=float(shown["h264_skipped"]),
        )
        for what, text in (
            ("compose_seconds", "Time composing a panorama (one remap per camera)."),
            ("encode_seconds", "Time JPEG-encoding a panorama (only while someone wants JPEG)."),
            ("h264_encode_seconds", "Time H.264-encoding a panorama (only while someone wants H.264)."),
        ):
            timing = body.get(what)
            if isinstance(timing, dict):
                count, total = timing.get("count"), _number(timing.get("sum"))
                if isinstance(count, int) and not isinstance(count, bool) and total is not None:
                    yield SummaryMetricFamily(PREFIX + "stitcher_" + what, text, count_value=count, sum_value=total)

    # -- HTTP

    def _http(self) -> Iterator[Metric]:
        bridge = self.bridge
        clients = GaugeMetricFamily(PREFIX + "http_clients", "Viewers of each stream.", labels=["stream"])
        sent = CounterMetricFamily(PREFIX + "http_frames_sent", "Stream frames written to viewers.", labels=["stream"])
        skipped = CounterMetricFamily(
            PREFIX + "http_frames_skipped",
            "Frames a viewer did not get because a newer one replaced it (a slow viewer).",
            labels=["stream"],
        )
        sent_bytes = CounterMetricFamily(
            PREFIX + "http_sent_bytes", "Bytes of frames written to viewers (streams and snapshots).", labels=["stream"]
        )
        for stream, channel in bridge.hub.channels.items():
            clients.add_metric([stream], float(bridge.viewers.get(stream, 0)))
            sent.add_metric([stream], float(channel.sent))
            skipped.add_metric([stream], float(channel.skipped))
            sent_bytes.add_metric([stream], float(channel.sent_bytes))
        yield from (clients, sent, skipped, sent_bytes)
        mp4 = bridge.hub.mp4
        if mp4 is not None:
            yield GaugeMetricFamily(
                PREFIX + "http_mp4_clients", "Viewers of /stream.mp4.", value=float(bridge.viewers.get(MP4_VIEWERS, 0))
            )
            yield CounterMetricFamily(
                PREFIX + "http_mp4_fragments_sent",
                "fMP4 fragments written to /stream.mp4 viewers.",
                value=float(mp4.sent),
            )
            yield CounterMetricFamily(
                PREFIX + "http_mp4_sent_bytes", "Bytes written to /stream.mp4 viewers.", value=float(mp4.sent_bytes)
            )
            yield CounterMetricFamily(
                PREFIX + "http_mp4_skips",
                "Times a slow /stream.mp4 viewer was moved on to the newest keyframe.",
                value=float(mp4.skips),
            )
        responses = CounterMetricFamily(PREFIX + "http_responses", "HTTP responses by status code.", labels=["code"])
        for code, count in sorted(bridge.responses.items()):
            responses.add_metric([str(code)], float(count))
        yield responses
        counters = bridge.counters
        for key, name, text in (
            ("refused_connections", "http_refused_connections", "Connections refused beyond the connection cap."),
            ("rejected", "http_rejected_clients", "Viewers turned away with 503 beyond max_clients."),
            ("dropped", "http_dropped_clients", "Viewers dropped because one write stalled."),
            ("head_timeouts", "http_head_timeouts", "Connections closed for not sending a request in time."),
            ("snapshots", "http_snapshots", "Snapshot requests."),
        ):
            yield CounterMetricFamily(PREFIX + name, text, value=float(counters.get(key, 0)))

    # -- processes

    def _processes(self) -> Iterator[Metric]:
        bridge = self.bridge
        cpu = CounterMetricFamily(
            PREFIX + "process_cpu_seconds", "CPU time (user + system) of each process.", labels=["process"]
        )
        rss = GaugeMetricFamily(
            PREFIX + "process_resident_memory_bytes", "Resident memory of each process.", labels=["process"]
        )
        usage: dict[str, Any] = {BRIDGE: process_usage()}
        for stream, process in [*((n, grabber_name(n)) for n in bridge.camera_names), (PANO, STITCHER)]:
            body, age = bridge.hub.status_of(stream)
            current = body is not None and age is not None and age < STATUS_DOWN_AFTER
            if current and body is not None and isinstance(body.get("process"), dict):
                usage[process] = body["process"]
        for process, numbers in usage.items():
            seconds, resident = _number(numbers.get("cpu_seconds")), _number(numbers.get("rss_bytes"))
            if seconds is not None:
                cpu.add_metric([process], seconds)
            if resident is not None:
                rss.add_metric([process], resident)
        yield from (cpu, rss)
        restarts = CounterMetricFamily(
            PREFIX + "process_restarts",
            "Times the supervisor restarted each child process (this host's daemon).",
            labels=["process"],
        )
        hangs = CounterMetricFamily(
            PREFIX + "process_hangs",
            "Of those restarts, the ones the watchdog caused: the process was hung (this host's daemon).",
            labels=["process"],
        )
        for process, child in bridge.processes.read().items():
            restarts.add_metric([process], child["restarts"])
            hangs.add_metric([process], child["hangs"])
        yield from (restarts, hangs)

    # -- publish targets

    def _publish(self) -> Iterator[Metric]:
        live = GaugeMetricFamily(
            PREFIX + "publish_live", "1 while the publish target's push is live, else 0.", labels=["target"]
        )
        texts = {
            "connects": "Connections the publish target made to its media server.",
            "failures": "Connections refused, lost or failed while pushing.",
            "sent": "Access units sent to the media server.",
            "dropped": "Access units dropped (no connection, queue overflow, waiting for a keyframe).",
        }
        counters = {
            key: CounterMetricFamily(PREFIX + f"publish_{key}", text, labels=["target"]) for key, text in texts.items()
        }
        for target, shown in publish_status(self.bridge.processes.read()).items():
            live.add_metric([target], 1.0 if shown["state"] == PUSH_LIVE else 0.0)
            for key, family in counters.items():
                family.add_metric([target], shown[key])
        yield live
        yield from counters.values()


class Metrics:
    """The bridge's registry, holding only the rig's collector."""

    def __init__(self, bridge: BridgeState) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_RigCollector(bridge))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
