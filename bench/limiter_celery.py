"""Baseline for ``bench/limiter.py``: Celery's built-in ``rate_limit`` on a real worker.

Run by the bench as ``celery -A limiter_celery worker -c 8`` (cwd ``bench/``). Configured by
environment: ``BENCH_BROKER`` (redis URL), ``BENCH_RATE`` (the quota, calls per second),
``BENCH_ENDPOINT``, ``BENCH_IMAGE`` (path of the sample image), ``BENCH_DOC_TYPE``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Imported before the pool forks, so worker processes start warm.
from limiter_workers import AK, PRODUCT, SECRET, warm_up

from worker.cloudauth.client import CloudAuthClient
from worker.cloudauth.errors import CloudAuthError
from worker.settings import load_settings

app = Celery("limiter_bench", broker=os.environ.get("BENCH_BROKER", "redis://127.0.0.1:1/0"))
app.conf.update(
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    worker_send_task_events=False,
)

_client: Any = None


def _get_client() -> Any:
    """One client per worker process, built on first use (after the fork)."""
    global _client
    if _client is None:
        settings = load_settings(
            endpoint=os.environ["BENCH_ENDPOINT"],
            access_key_id=AK,
            access_key_secret=SECRET,
            quotas={PRODUCT: float(os.environ.get("BENCH_RATE", "10"))},
            read_timeout=30,
        )
        # No gate: Celery limits the rate.
        _client = CloudAuthClient(settings.provider, max_attempts=1)
    return _client


_image: str | None = None


@worker_process_init.connect
def _warm(**_: Any) -> None:
    """Open the connection before the first task, as the other strategies do."""
    warm_up(_get_client())


@app.task(name="bench.ocr", rate_limit=f"{os.environ.get('BENCH_RATE', '10')}/s")
def ocr(n: int) -> None:
    """One DocOcrV2 call; a throttled answer is counted by the emulator, not retried."""
    global _image
    if _image is None:
        _image = base64.b64encode(Path(os.environ["BENCH_IMAGE"]).read_bytes()).decode()
    with contextlib.suppress(CloudAuthError):
        _get_client().doc_ocr_v2(
            merchant_biz_id=f"celery{n}",
            merchant_user_id="bench-user",
            doc_type=os.environ["BENCH_DOC_TYPE"],
            image_base64=_image,
        )
