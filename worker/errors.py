"""One error rule for the whole worker: every error we raise is an ``IdvError``.

An ``IdvError`` says three things a task needs to decide what happens next, and nothing else
decides it (``tasks.base.IdvTask.handle_error``):

* ``code`` — a short, stable, non-personal name (the provider's code, an S3 code, ``LeaseBusy``);
* ``retryable`` — whether the same work may be tried again later (within its deadline);
* ``retry_after`` — the earliest sensible moment to try again, in seconds from now (or None).

``alert`` marks errors that an operator must hear about at once (metric + Sentry), and
``stops_lane`` those after which every further call of the account will fail the same way.

The tree::

    IdvError
     ├── ConfigurationError          (ValueError) a setting or deployment that cannot work
     │    ├── SettingsError          an ``IDV_*`` variable is invalid (worker.settings)
     │    └── NoRetryHandler         (LookupError) no flow retries this dead-letter kind
     ├── InvalidInput                (ValueError) input refused at the edge: ids, manifests, rows
     │    ├── InvalidKeyError        an id or key that is not safe to use (worker.keys)
     │    ├── ImageInfoError         not a readable JPEG or PNG (worker.cloudauth.images)
     │    └── EventError             an event the results stream refuses (worker.stores)
     ├── CloudAuthError              provider and transport failures (worker.cloudauth.errors)
     │    ├── RequestValidationError  bad argument, refused before any request
     │    ├── ThrottledError          retryable, retry_after from x-acs-retry-after
     │    ├── NotReadyError           ProcessNotCompleted: retryable until the deadline
     │    ├── TransientError          5xx, timeouts, malformed replies: retryable unless a billed
     │    │                           call may have been processed
     │    ├── PermanentError          not retryable
     │    │    └── TransactionInvalidError
     │    └── AccountError            not retryable, alert, stops the lane
     │         └── CredentialsError
     ├── GateError                   the limiter (worker.ratelimit.gate)
     │    ├── DeadlineUnreachable     not retryable: the slot would come too late
     │    │    └── MaxWaitExceeded    retryable, retry_after = the earliest slot
     │    └── GateUnavailable         retryable: the limiter's store is unreachable
     ├── StorageError                S3 (worker.storage.errors); retryable per S3 code
     │    ├── ObjectNotFound
     │    └── IntegrityError
     ├── LeaseBusy, LeaseLost        another worker holds the item: retryable (worker.stores)
     ├── EvidenceError               evidence download (worker.evidence)
     │    ├── EvidenceLost, EvidenceUnavailable
     │    └── BadEvidence            not retryable
     ├── WebhookError                result webhook delivery; retryable per HTTP status
     ├── CallbackRejected            a provider callback not taken; retryable when its status
     │                               is 5xx (worker.onboarding.callbacks)
     ├── MetricsUnavailable          retryable: the metrics store cannot be read
     ├── DeadLettered                the work went to the dead-letter store (tasks.base)
     └── batch errors                (worker.batch) ManifestError, SubmitError, BatchStateError,
                                     BatchNotFound...

Anything that is not an ``IdvError`` is a bug or an unclassified failure: tasks treat it as
retryable a bounded number of times, then dead-letter it.
"""

from __future__ import annotations

from typing import Any, ClassVar


class IdvError(Exception):
    """Base of every error the worker raises on purpose.

    ``retryable`` and ``alert`` default to the class attributes; instances may override
    ``retryable`` (an S3 code, an HTTP status) and set ``retry_after``.
    """

    default_code: ClassVar[str] = ""
    retryable: bool = False
    retry_after: float | None = None
    alert: ClassVar[bool] = False
    stops_lane: ClassVar[bool] = False

    @property
    def code(self) -> str:
        return self.__dict__.get("_code") or self.default_code or type(self).__name__

    @code.setter
    def code(self, value: str) -> None:
        self.__dict__["_code"] = value

    def describe(self) -> dict[str, Any]:
        """A JSON-able, non-personal summary for dead letters and logs."""
        return {
            "type": type(self).__name__,
            "code": self.code,
            "retryable": self.retryable,
            "retry_after": self.retry_after,
            "message": str(self),
        }


class ConfigurationError(IdvError, ValueError):
    """A setting or deployment that cannot work: not retried, the operator must fix it."""

    alert = True


class InvalidInput(IdvError, ValueError):
    """Input refused at the edge (an id, a manifest, a row); never retried as it is."""


def is_retryable(exc: BaseException) -> bool:
    """The one rule: an ``IdvError`` says so itself; anything else is retried (bounded)."""
    if isinstance(exc, IdvError):
        return exc.retryable
    return True


def retry_after(exc: BaseException, cap_s: float | None = None) -> float | None:
    """Seconds to wait before the next attempt, when the error knows (else None).

    ``cap_s`` (``IDV_MAX_RETRY_AFTER_S``) bounds what a provider may ask for: an
    ``x-acs-retry-after`` of a day must not put a worker to sleep for a day.
    """
    wait = exc.retry_after if isinstance(exc, IdvError) else None
    if wait is None or cap_s is None:
        return wait
    return max(0.0, min(wait, cap_s))


def error_code(exc: BaseException) -> str:
    """A short, safe code for metrics and dead letters."""
    code = exc.code if isinstance(exc, IdvError) else type(exc).__name__
    return "".join(c for c in code if c.isalnum() or c in "._-")[:64] or "unknown"
