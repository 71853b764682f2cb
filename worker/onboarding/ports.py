"""What the onboarding service asks of its dependencies (each a Protocol; the adapters and
the ledger implement them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from worker.errors import IdvError

if TYPE_CHECKING:
    from worker.cloudauth.models import CheckResultResult
    from worker.jobs.notices import Notice


class CheckResultApi(Protocol):
    """The one provider call the service makes (``CloudAuthClient`` implements it)."""

    def check_result(
        self,
        *,
        transaction_id: str,
        merchant_biz_id: str,
        product_code: str,
        is_return_image: bool = False,
        ctx: Any = None,
    ) -> CheckResultResult: ...


class Lease(Protocol):
    """A held lease (``worker.stores.leases.Lease``)."""

    def renew(self, ttl_s: float | None = None) -> bool: ...

    def release(self) -> bool: ...


class LeaseLost(IdvError):
    """The lease expired while this worker was still working (another may have taken over)."""

    retryable = True

    def __init__(self, transaction_id: str) -> None:
        self.transaction_id = transaction_id
        super().__init__(f"lease on transaction {transaction_id} was lost")


class Leases(Protocol):
    """The lease manager (``worker.stores.leases.LeaseManager``)."""

    def acquire(self, kind: str, id: str, ttl_s: float) -> Lease | None: ...


class ResultRecords(Protocol):
    """The result store (``worker.stores.results.ResultStore``)."""

    def get_record(self, kind: str, id: str) -> dict[str, Any] | None: ...

    def put_and_publish(
        self,
        kind: str,
        id: str,
        record: Mapping[str, Any],
        event: Mapping[str, object],
        *,
        create_only: bool = False,
    ) -> str | None: ...


class DeadLetters(Protocol):
    def add(
        self,
        kind: str,
        item_id: str,
        reason: str,
        *,
        code: str | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> Any: ...


class Progress(Protocol):
    """Where the service reports to the transaction ledger (``worker.ledger.Ledger``)."""

    def extend(self, tid: str, until: float) -> bool: ...

    def saw_completed(self, tid: str, at: float) -> float | None:
        """The first time a worker saw the completed result (None: no ledger entry)."""

    def finish(self, tid: str, *, evidence: str, reason: str | None = None) -> bool: ...

    def poll_later(self, tid: str) -> None: ...

    def gone(self, tid: str, *, archival: bool, reason: str) -> str | None:
        """Move ``tid`` to ``expired``/``abandoned``; the state moved to (None: it did not)."""


class Announcer(Protocol):
    """Where the service announces events for the webhook (the ``WorkSender``'s ``notify``)."""

    def notify(self, notice: Notice) -> None: ...


Reporter = Callable[..., None]
