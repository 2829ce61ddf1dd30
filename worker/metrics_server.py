"""The optional metrics endpoint of a worker: `CHATQ_METRICS_PORT` set, each worker's main
process serves the fleet's metrics (worker/metrics) at `http://ADDRESS:PORT/metrics`.

Every worker serves the same fleet-wide numbers (they are read from Redis), so
Prometheus needs to scrape only one of them; a second worker on the same host finds the
port taken and says so, without stopping.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals
from prometheus_client import start_http_server

from worker.app import QUEUES, current_settings, worker_redis
from worker.metrics import registry_for

__all__ = ["serve"]

log = logging.getLogger(__name__)


def serve(port: int, address: str) -> bool:
    """Serve the fleet's metrics on `address:port` from a daemon thread; False (logged)
    when the port cannot be bound."""
    try:
        start_http_server(port, addr=address, registry=registry_for(worker_redis(), queues=QUEUES))
    except OSError as exc:
        log.warning("metrics endpoint not started on %s:%d: %s", address, port, exc)
        return False
    log.info("metrics at http://%s:%d/metrics", address, port)
    return True


@signals.worker_ready.connect
def _worker_ready(**kw: Any) -> None:
    settings = current_settings()
    if settings.metrics_port is not None:
        serve(settings.metrics_port, settings.metrics_address)
