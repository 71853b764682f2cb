"""Sentry (optional, ``IDV_SENTRY_DSN``), with nothing personal or secret in what it sends.

Three layers, each catching what the one before cannot:

* the SDK's own ``EventScrubber`` with a denylist extending ``DEFAULT_DENYLIST`` (provider
  secrets, callback tokens, and every field the models mark personal), recursive, over
  request, extra, user, breadcrumb data, frame variables and spans;
* ``before_breadcrumb``: HTTP breadcrumbs lose their query string, fragment and bodies (the
  httpx integration records ``http.query`` — a presigned link's ``Signature``); log breadcrumbs
  are redacted like log lines;
* ``before_send``: no ``request`` or ``user``; every string redacted (URL queries, secrets,
  names and ID numbers after their keys) and personal keys replaced (``scrub``).

``send_default_pii`` is left off and local variables are not sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

from worker.observability.personal_fields import PERSONAL_FIELDS
from worker.observability.redaction import redact_text, scrub
from worker.settings import ObservabilitySettings

OUR_DENYLIST = [
    # provider and storage credentials (RPC query parameters, ACS3 headers, S3)
    "accesskeyid", "access_key_id", "accesskeysecret", "access_key_secret", "signature",
    "signaturenonce", "securitytoken", "security_token", "x-acs-security-token",
    "security-token", "x-oss-security-token", "x-oss-signature", "x-oss-credential",
    "x-amz-signature", "x-amz-credential", "x-amz-security-token", "ossaccesskeyid",
    "aws_secret_access_key", "s3_secret_access_key", "webhook_secret", "dsn",
    # callbacks
    "callbacktoken", "callback_token", "callback_tokens",
    # personal data
    "fullname", "full_name", "firstname", "lastname", "surname", "givenname", "idnumber",
    "id_number", "idno", "certno", "passportno", "passportnumber", "documentnumber",
    "birthdate", "birth_date", "dateofbirth", "address", "mobile", "phone", "email",
    # evidence
    "faceimg", "certimg", "docvideourl", "facepictureurl", "imageurl", "image", "video",
]  # fmt: skip

_HTTP_DROP = (
    "http.query",
    "http.fragment",
    "http.request.body",
    "http.response.body",
    "body",
    "request_body",
    "response_body",
)


def denylist() -> list[str]:
    """The SDK's ``DEFAULT_DENYLIST`` and ours (keys are compared lower-cased)."""
    from sentry_sdk.scrubber import DEFAULT_DENYLIST  # heavy: ~0.15 s, loaded on first use

    personal = sorted({name.lower() for name in PERSONAL_FIELDS} - {"name"})
    return [*DEFAULT_DENYLIST, *OUR_DENYLIST, *personal]


def _strip_url(url: str) -> str:
    return url.split("?", 1)[0].split("#", 1)[0]


def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any] | None) -> dict[str, Any]:
    """No query strings, fragments or bodies in breadcrumbs; messages redacted like logs."""
    data = crumb.get("data")
    if isinstance(data, dict):
        for key in _HTTP_DROP:
            data.pop(key, None)
        for key in ("url", "http.url", "url.full"):
            if isinstance(data.get(key), str):
                data[key] = _strip_url(data[key])
    cleaned: dict[str, Any] = scrub(crumb)
    return cleaned


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    event.pop("request", None)
    event.pop("user", None)
    cleaned: dict[str, Any] = scrub(event)
    return cleaned


def release() -> str:
    """``idv-worker@<package version>``."""
    try:
        version = metadata.version("idv-worker")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    return f"idv-worker@{version}"


def init_sentry(settings: ObservabilitySettings, *, transport: Any = None) -> bool:
    """Initialise Sentry if a DSN is configured; returns whether it is active.

    ``transport`` replaces the SDK's HTTP transport (a ``sentry_sdk.transport.Transport``).
    """
    if settings.sentry_dsn is None:
        return False
    import sentry_sdk  # heavy: ~0.15 s, loaded on first use
    from sentry_sdk.scrubber import EventScrubber  # heavy: ~0.15 s, loaded on first use

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.sentry_environment,
        release=release(),
        include_local_variables=False,
        max_request_body_size="never",
        event_scrubber=EventScrubber(denylist=denylist(), recursive=True),
        before_send=before_send,  # type: ignore[arg-type]
        before_breadcrumb=before_breadcrumb,
        traces_sample_rate=0.0,
        transport=transport,
    )
    return True


def report_to_sentry(message: str, *, level: str = "error", **tags: str) -> None:
    """Send a message event (tags are ids and codes only); a no-op when Sentry is off."""
    import sentry_sdk  # heavy: ~0.15 s, loaded on first use

    if not sentry_sdk.get_client().is_active():
        return
    with sentry_sdk.new_scope() as scope:
        for key, val in tags.items():
            scope.set_tag(key, val)
        sentry_sdk.capture_message(redact_text(message), level=level)  # type: ignore[arg-type]


@contextmanager
def cron_monitor(slug: str, every_s: float) -> Iterator[None]:
    """A Sentry Cron check-in around one run of a scheduled sweep (no-op without Sentry).

    The monitor is created on first check-in with an interval schedule of ``every_s`` (rounded
    up to a minute, Sentry's unit), so a sweep that stops running raises Sentry's own alert.
    """
    import sentry_sdk  # heavy: ~0.15 s, loaded on first use

    if not sentry_sdk.get_client().is_active():
        yield
        return
    minutes = max(1, int(-(-every_s // 60)))
    config: Any = {
        "schedule": {"type": "interval", "value": minutes, "unit": "minute"},
        "checkin_margin": minutes,
        "max_runtime": max(1, minutes * 2),
    }
    with sentry_sdk.monitor(monitor_slug=slug, monitor_config=config):
        yield
