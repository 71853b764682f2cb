"""The receiver's HTTP server: where it listens and what it tolerates from a client."""

from __future__ import annotations

from pydantic import Field

from worker.settings.base import Part


class ReceiverSettings(Part):
    """Bind address, timeouts and per-client limits of the callback receiver."""

    receiver_host: str = Field("127.0.0.1", description="receiver bind address")
    receiver_port: int = Field(8080, ge=0, le=65535, description="receiver port")
    receiver_read_timeout_s: float = Field(
        10.0, gt=0, le=300, description="a request whose headers or body take longer is closed"
    )
    receiver_limit_concurrency: int = Field(
        512, ge=1, description="connections and requests the receiver serves at once (503 above)"
    )
    receiver_keep_alive_s: float = Field(
        5.0, gt=0, le=120, description="seconds an idle keep-alive connection stays open"
    )
    receiver_reject_limit: int = Field(
        30,
        ge=1,
        description="rejected callbacks (403/400) from one address per window before it is "
        "answered 429 without any work",
    )
    receiver_reject_window_s: float = Field(
        60.0, gt=0, description="window of IDV_RECEIVER_REJECT_LIMIT, seconds"
    )
