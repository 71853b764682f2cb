"""The Python API of the flows, for applications that embed idv-worker.

``submit_callback(params)`` hands one provider callback to the worker from an application's own
endpoint (instead of running ``idv-worker receiver``); ``batches()`` opens the batch API.
Objects come from a ``worker.runtime.Runtime``, built on first use from ``IDV_*`` settings.
"""

from __future__ import annotations

from worker.batch import BatchAPI
from worker.onboarding import CallbackIntake, Params, Submission
from worker.runtime import Runtime, get_runtime
from worker.settings import Settings, load_settings


def submit_callback(
    params: Params,
    *,
    received_at: float | None = None,
    verify_token: bool = True,
    intake: CallbackIntake | None = None,
) -> Submission:
    """Take one provider callback from an application's own endpoint.

    ``params`` are the callback's query (or form) parameters as received. Returns a
    ``Submission`` (``accepted`` or ``duplicate``; answer the provider 200 for both) or raises
    ``CallbackRejected`` whose ``status`` is the HTTP status to answer (403, 400, 503).
    """
    intake = intake or get_runtime().intake
    return intake.submit(params, received_at=received_at, verify_token=verify_token)


def batches(settings: Settings | None = None) -> BatchAPI:
    """A ``BatchAPI`` on ``settings`` (default: the environment); close it (or use ``with``).

    Reads need only Redis; the Celery app that sends chunk messages is built on first submit.
    """
    runtime = Runtime(settings or load_settings())
    return BatchAPI(
        runtime.settings,
        redis_client=runtime.redis,
        make_enqueuer=lambda: runtime.enqueuer,
        make_objects=lambda: runtime.objects,
        on_close=runtime.close,
    )
