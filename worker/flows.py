"""The Python API of the flows, for applications that embed idv-worker.

``submit_callback(params)`` hands one provider callback to the worker from an application's own
endpoint (instead of running ``idv-worker receiver``); ``start(...)`` starts a flow and records
it in the ledger; ``batches()`` opens the batch API. Each builds what it needs from ``IDV_*``
settings; an application that calls them often builds a ``worker.wiring.Cli`` once and passes
it (``cli=``), or the intake (``intake=cli.intake()``).
"""

from __future__ import annotations

from worker.batch import BatchAPI
from worker.ledger import StartedFlow
from worker.onboarding import CallbackIntake, Params, Submission
from worker.settings import Settings
from worker.wiring import Cli


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
    if intake is not None:
        return intake.submit(params, received_at=received_at, verify_token=verify_token)
    with Cli() as cli:
        return cli.intake().submit(params, received_at=received_at, verify_token=verify_token)


def start(
    *,
    product_code: str,
    merchant_user_id: str,
    merchant_biz_id: str | None = None,
    doc_type: str | None = None,
    meta_info: str | None = None,
    return_url: str | None = None,
    cli: Cli | None = None,
) -> StartedFlow:
    """Start one verification flow (``Initialize``) and record it in the ledger.

    Returns the ``TransactionUrl`` for the user (single-use) and the ids the ledger keeps; the
    callback URL is ``IDV_CALLBACK_URL`` with ``productCode`` and ``merchantBizId`` added.
    """
    own = cli is None
    builder = cli or Cli()
    try:
        return builder.flow_starter().start(
            product_code=product_code,
            merchant_user_id=merchant_user_id,
            merchant_biz_id=merchant_biz_id,
            doc_type=doc_type,
            meta_info=meta_info,
            return_url=return_url,
        )
    finally:
        if own:
            builder.close()


def batches(settings: Settings | None = None) -> BatchAPI:
    """A ``BatchAPI`` on ``settings`` (default: the environment); close it (or use ``with``).

    Reads need only Redis; the Celery app that sends chunk messages is built on first submit.
    """
    return Cli(settings).batches()
