"""The receiver's HTTP server: where it listens and what it tolerates from a client."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from worker.settings.base import Part, parse_list


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
    receiver_trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="addresses or CIDRs of the reverse proxies in front of the receiver, "
        "comma-separated: the client is the rightmost X-Forwarded-For hop not among them "
        "(empty: X-Forwarded-For is ignored, the peer is the client)",
    )
    metrics_port: int = Field(
        9464,
        ge=0,
        le=65535,
        description="port of the receiver's own metrics server (GET /metrics), on the "
        "receiver's bind address; 0 picks a free port",
    )
    metrics_on_callback_port: bool = Field(
        False,
        description="also serve GET /metrics on the public callback port (off: only on "
        "IDV_METRICS_PORT)",
    )

    @field_validator("receiver_trusted_proxies", mode="before")
    @classmethod
    def _proxies_list(cls, value: Any) -> Any:
        return parse_list(value)

    @field_validator("receiver_trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR") from None
        return value
