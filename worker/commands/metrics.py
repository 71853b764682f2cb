"""``idv-worker metrics``: every process's metrics (shared in Redis) and the lane queues."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``metrics``."""
    parser = subparsers.add_parser(
        "metrics",
        help="print the metrics of every process (Prometheus text, OpenMetrics or JSON)",
        description="Read the shared metrics and the Celery queues from Redis and print them. "
        "Exit 1 with one line on stderr when Redis is unreachable (IDV_METRICS_TIMEOUT_S).",
    )
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON (families and samples)")
    fmt.add_argument("--openmetrics", action="store_true", help="print the OpenMetrics format")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Read the shared metrics from Redis and print them."""
    from worker.observability import MetricsUnavailable
    from worker.settings import load_settings
    from worker.wiring.receiver import build_exporter

    exporter = build_exporter(load_settings())
    try:
        if args.json:
            out = json.dumps(exporter.as_json(), indent=2) + "\n"
        else:
            accept = "application/openmetrics-text" if args.openmetrics else ""
            out = exporter.render(accept)[0].decode()
    except MetricsUnavailable as exc:
        print(f"idv-worker metrics: {exc.reason}", file=sys.stderr)
        return 1
    finally:
        exporter.close()
    sys.stdout.write(out)
    return 0
