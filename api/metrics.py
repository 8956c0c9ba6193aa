"""Prometheus metrics: request latency by route, job counts by kind and status, index sizes."""

from __future__ import annotations

import time

from flask import Flask, g, request
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily

from indexer.collections import collection_counts
from indexer.jobs import job_counts
from indexer.library import Library

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # any other is "other"


class CatalogCollector:
    """Read at scrape time from the catalog and the stores: jobs by kind/status, images and vectors per collection."""

    def __init__(self, library: Library) -> None:
        self.library = library

    def collect(self):
        jobs = GaugeMetricFamily("dinoseek_jobs", "Jobs by kind and status", labels=["kind", "status"])
        images = GaugeMetricFamily("dinoseek_collection_images", "Images per collection and status",
                                   labels=["collection", "status"])
        vectors = GaugeMetricFamily("dinoseek_collection_vectors", "Global vectors stored per collection",
                                    labels=["collection"])
        for (kind, status), n in job_counts(self.library).items():
            jobs.add_metric([kind, status], n)
        for c in collection_counts(self.library):
            images.add_metric([c["name"], "indexed"], c["indexed"])
            images.add_metric([c["name"], "failed"], c["failed"])
            images.add_metric([c["name"], "pending"], c["images"] - c["indexed"] - c["failed"])
            vectors.add_metric([c["name"]], c["vectors"])
        yield from (jobs, images, vectors)


def install(app: Flask, library: Library) -> CollectorRegistry:
    registry = CollectorRegistry()
    latency = Histogram("dinoseek_http_request_duration_seconds", "Time to answer a request, by route",
                        ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=registry)
    registry.register(CatalogCollector(library))

    @app.before_request
    def _start_timer():
        g.dinoseek_started = time.perf_counter()

    @app.after_request
    def _observe(response):
        started = g.pop("dinoseek_started", None)
        if started is not None:
            # labels from fixed sets only: a client cannot add series (any method, any path, no key)
            method = request.method if request.method in METHODS else "other"
            if response.status_code == 401:
                route = "unauthenticated"
            else:
                route = request.url_rule.rule if request.url_rule is not None else "unmatched"
            latency.labels(method, route, str(response.status_code)).observe(time.perf_counter() - started)
        return response

    return registry
