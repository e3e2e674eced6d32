"""Prometheus metrics through ``prometheus_client``: read from the running daemon at scrape time.

Nothing is counted twice and nothing runs per frame here: a custom collector turns the pipeline's own
counters, its latency histograms (:class:`edge_daemon.pipeline.health.Histogram`, observed on the publish
thread), the publisher's and the cameras' state into metric families when ``/metrics`` is scraped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class DaemonCollector(Collector):
    """``state``: the web server's view of the daemon (``phase``, ``info``, ``pipeline``, ``publisher``)."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        state = self.state
        up = GaugeMetricFamily("edge_daemon_up", "1 while the pipeline runs, 0 while loading or stopping")
        up.add_metric([], 1.0 if state.phase == "running" else 0.0)
        yield up
        about = state.info()
        if about:
            info = InfoMetricFamily("edge_daemon_engine", "The model and the engine that runs it")
            info.add_metric([], {k: str(v) for k, v in about.items() if not isinstance(v, dict | list)})
            yield info
        pipeline = state.pipeline
        if pipeline is not None:
            yield from _pipeline(pipeline)
        publisher = state.publisher
        if publisher is not None:
            yield from _publisher(publisher)


def _pipeline(pipeline: Any) -> Iterator[Metric]:
    health = pipeline.health()
    stats = pipeline.stats
    per_camera = [
        ("fps", GaugeMetricFamily, "Frames published per second", "fps"),
        ("frames", CounterMetricFamily, "Frames captured", "frames"),
        ("dropped_by_policy", CounterMetricFamily, "Frames dropped by the drop policy", "dropped_by_policy"),
        ("reconnects", CounterMetricFamily, "Camera reconnections", "reconnects"),
        ("connected", GaugeMetricFamily, "1 while the camera delivers frames", "connected"),
        ("detect", GaugeMetricFamily, "1 while detection is on (MQTT control)", "detection_enabled"),
        ("threshold", GaugeMetricFamily, "Confidence threshold in force", "confidence_threshold"),
        ("motion_skipped", CounterMetricFamily, "Frames skipped by motion gating", "motion_skipped"),
    ]
    for key, family, text, name in per_camera:
        metric = family(f"edge_camera_{name}", text, labels=["camera"])
        for camera, cam in health["cameras"].items():
            if key in cam:
                metric.add_metric([camera], float(cam[key]))
        yield metric
    for name, value, text in (
        ("frames_published", stats.published, "Frames whose results were published"),
        ("detections", stats.detections, "Detections published"),
        ("events", stats.events, "Analytics events published"),
        ("frames_inferred", stats.inferred, "Frames inferred"),
    ):
        counter = CounterMetricFamily(f"edge_{name}", text)
        counter.add_metric([], float(value))
        yield counter
    for name, hist, text in (
        ("inference", stats.inference_hist, "Engine time per batch"),
        ("end_to_end", stats.end_to_end_hist, "Capture to publish, per frame"),
    ):
        buckets = [(b if b == "+Inf" else f"{float(b) / 1000:g}", n) for b, n in hist.cumulative()]
        histogram = HistogramMetricFamily(f"edge_{name}_latency_seconds", text)
        histogram.add_metric([], buckets, hist.sum / 1000.0)
        yield histogram


def _publisher(publisher: Any) -> Iterator[Metric]:
    connected = GaugeMetricFamily("edge_mqtt_connected", "1 while connected to the broker")
    connected.add_metric([], 1.0 if getattr(publisher, "connected", False) else 0.0)
    yield connected
    published = CounterMetricFamily("edge_mqtt_published", "Messages handed to MQTT")
    published.add_metric([], float(getattr(publisher, "published", 0)))
    yield published
    outbox = getattr(publisher, "outbox", None)
    if outbox is None:
        return
    try:
        pending = float(outbox.pending())
    except Exception:  # the disk is failing: say so through write errors, not a failed scrape
        pending = float("nan")
    for name, family, value, text in (
        ("pending", GaugeMetricFamily, pending, "Messages on disk awaiting the broker's acknowledgement"),
        ("dropped", CounterMetricFamily, outbox.dropped, "Messages dropped by the outbox's bounds"),
        ("write_errors", CounterMetricFamily, publisher.outbox_write_errors_total, "Failed outbox writes"),
    ):
        metric = family(f"edge_outbox_{name}", text)
        metric.add_metric([], float(value))
        yield metric


def registry_for(state: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(state))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
