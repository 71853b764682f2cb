"""Logging, metrics and Sentry — with PII kept out of all three.

* ``logs``: one format (text or JSON) for our records and every library's, context ids from
  ``log_context``, a redaction filter on every handler, Celery's logging signals answered.
* ``store``: counters, gauges and histograms kept in Redis so every process adds to the same
  series (``RedisMetrics.incr/observe/gauge``); label names from a closed set, values from a
  strict charset, so an ID number or URL can never become a label.
* ``families``, ``collector``, ``exposition``, ``broker``: the registry of metric families,
  the ``prometheus_client`` collector over the store and the Celery queues, its rendering and
  the exporter used by ``GET /metrics`` and ``idv-worker metrics``.
* ``redaction``: URL query strings, secrets and personal data out of text and structures.
* ``sentry``: optional Sentry with the SDK's ``EventScrubber`` and our own hooks.
"""

from worker.observability.broker import QueueProbe, QueueStat, connect_publish_stamp
from worker.observability.collector import (
    GaugeSample,
    GaugeSource,
    StoreCollector,
    register_gauge_source,
    unregister_gauge_source,
)
from worker.observability.exposition import MetricsExporter, MetricsUnavailable
from worker.observability.families import FAMILIES, Family, account_code
from worker.observability.logs import (
    configure_logging,
    connect_celery_logging,
    get_logger,
    log_context,
    logging_config,
)
from worker.observability.redaction import REDACTED, RedactingFilter, redact_text, scrub
from worker.observability.sentry import cron_monitor, init_sentry, report_to_sentry
from worker.observability.store import (
    ALLOWED_LABELS,
    DEFAULT_BUCKETS,
    Metrics,
    NullMetrics,
    RedisMetrics,
)

# Every process that imports this package (workers, receiver, CLI) logs through Celery's
# signals our way and stamps the messages it publishes with their send time.
connect_celery_logging()
connect_publish_stamp()

__all__ = [
    "ALLOWED_LABELS",
    "DEFAULT_BUCKETS",
    "FAMILIES",
    "REDACTED",
    "Family",
    "GaugeSample",
    "GaugeSource",
    "Metrics",
    "MetricsExporter",
    "MetricsUnavailable",
    "NullMetrics",
    "QueueProbe",
    "QueueStat",
    "RedactingFilter",
    "RedisMetrics",
    "StoreCollector",
    "account_code",
    "configure_logging",
    "cron_monitor",
    "get_logger",
    "init_sentry",
    "log_context",
    "logging_config",
    "redact_text",
    "register_gauge_source",
    "report_to_sentry",
    "scrub",
    "unregister_gauge_source",
]
