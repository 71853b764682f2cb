"""The outbox: every outbound event is written here first, and delivered from here.

A Celery message about an event is only a hint that it is due; the outbox is the truth. One
event is one hash keyed by its stable ``webhook-id`` (``worker.events.event_id``), so every
attempt, and every announcement of the same change, is the same entry. Keys (hash-tagged
``{outbox}``, so each script's keys live on one Redis Cluster slot)::

    <ns>{outbox}:evt:<event id>           hash: type, subject, version, at, data, state,
                                          attempts, claim, claim_until, next_at, error, times
    <ns>{outbox}:due                      zset: pending events by when to look at them again
    <ns>{outbox}:pending                  zset: pending events by when they were added
    <ns>{outbox}:of:<scope>:<subject>     set: the events of one transaction (``tx``) or batch
                                          (``batch``), so erasure finds them

``state`` is ``pending`` until an attempt is answered 2xx (``delivered``) or attempts run out
(``dead``; the dead letter holds the event). Delivered and dead entries are kept
``keep_s`` seconds (TTL), so a repeated announcement (a redelivered message, the reconciler
and a worker both) finds the event delivered and sends nothing.

An attempt first *claims* the event (``claim``): one attempt at a time, for ``lease_s``
seconds, after which the claim is void. Its due entry moves to the claim's end: an attempt
that died with its process (SIGKILL) leaves the event due a few seconds later, and a driver
(``take_due``, each worker's heartbeat) hints it again. A retry is a due time here
(``retry``), never a delayed message.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import redis

from worker.jobs.notices import Notice, event_id
from worker.keys import RedisKeys, validate_id
from worker.redisio import lua_script, text, text_map

Outcome = Literal["delivered", "retry", "dead"]
SCOPES = {"onboarding": "tx", "batch": "batch"}


def scope_of(kind: str) -> str:
    """The subject scope of an event type: ``tx`` (transactions) or ``batch``."""
    return SCOPES[kind.partition(".")[0]]


@dataclass(frozen=True, slots=True)
class Claimed:
    """One attempt's claim on an event: its id, the token that owns it, the attempt number
    (1-based) and the notice to send."""

    event_id: str
    token: str
    attempt: int
    notice: Notice


@dataclass(frozen=True, slots=True)
class Backlog:
    """Pending events now, and how long the oldest has waited (0 when none)."""

    pending: int
    oldest_s: float


class Outbox:
    """Outbound events in Redis (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        *,
        lease_s: float = 30.0,
        keep_s: float = 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = client
        self.prefix = f"{keys.namespace}{{outbox}}:"
        self.due_key = self.prefix + "due"
        self.pending_key = self.prefix + "pending"
        self.lease_s = lease_s
        self.keep_s = int(keep_s)
        self.clock = clock
        self._add = client.register_script(lua_script("worker.stores", "outbox_add"))
        self._claim = client.register_script(lua_script("worker.stores", "outbox_claim"))
        self._finish = client.register_script(lua_script("worker.stores", "outbox_finish"))
        self._take = client.register_script(lua_script("worker.stores", "due_take"))

    # ------------------------------------------------------------------ keys

    def event_key(self, event_id: str) -> str:
        return self.prefix + "evt:" + validate_id(event_id, "event_id")

    def subject_key(self, scope: str, subject: str) -> str:
        return f"{self.prefix}of:{scope}:{validate_id(subject, 'subject')}"

    # ------------------------------------------------------------------ writes

    def add(self, notice: Notice) -> tuple[str, bool]:
        """Write the event of ``notice``: ``(webhook-id, whether it is to be sent)`` (False: it
        is already pending or delivered). A dead one is made pending again. It can be claimed
        at once (the caller hints it); a driver finds it due ``lease_s`` later if the hint was
        lost."""
        evt = event_id(notice.type, notice.subject, notice.version)
        now = self.clock()
        fields = {
            "type": notice.type,
            "subject": notice.subject,
            "version": notice.version,
            "at": repr(notice.at),
            "data": json.dumps(dict(notice.data), separators=(",", ":"), sort_keys=True),
        }
        args: list[Any] = [evt, repr(now), self.keep_s, repr(now + self.lease_s)]
        for name, value in fields.items():
            args += [name, value]
        keys = [self.event_key(evt), self.due_key, self.pending_key]
        keys.append(self.subject_key(scope_of(notice.type), notice.subject))
        return evt, int(cast("int", self._add(keys=keys, args=args))) != 0

    def claim(self, event_id: str, *, token: str | None = None) -> Claimed | str:
        """Claim ``event_id`` for one attempt: a ``Claimed``, or why not (``gone``,
        ``delivered``, ``dead``, ``held``, ``later``)."""
        token = token or uuid.uuid4().hex
        raw = cast(
            "list[Any]",
            self._claim(
                keys=[self.event_key(event_id), self.due_key],
                args=[event_id, token, repr(self.clock()), repr(self.lease_s)],
            ),
        )
        if text(raw[0]) != "claimed":
            return text(raw[0])
        fields = text_map(raw[2:])
        notice = Notice.from_message(
            {
                "type": fields["type"],
                "subject": fields["subject"],
                "version": fields["version"],
                "at": fields["at"],
                "data": json.loads(fields["data"]),
            }
        )
        return Claimed(event_id, token, int(text(raw[1])), notice)

    def finish(
        self,
        claimed: Claimed,
        outcome: Outcome,
        *,
        next_at: float = 0.0,
        error: str = "",
    ) -> bool:
        """End ``claimed``'s attempt (see ``outbox_finish.lua``); whether it changed the entry."""
        keys = [
            self.event_key(claimed.event_id),
            self.due_key,
            self.pending_key,
            self.subject_key(scope_of(claimed.notice.type), claimed.notice.subject),
        ]
        args: list[str | int] = [
            claimed.event_id,
            claimed.token,
            outcome,
            repr(self.clock()),
            self.keep_s,
            repr(next_at),
            error[:200],
        ]
        return int(cast("int", self._finish(keys=keys, args=args))) == 1

    def take_due(self, limit: int, hint_s: float) -> list[str]:
        """Up to ``limit`` event ids due now, each moved ``hint_s`` ahead (a driver hints them;
        one whose hint is lost comes due again then)."""
        now = self.clock()
        raw = self._take(keys=[self.due_key], args=[repr(now), limit, repr(now + hint_s)])
        return [text(m) for m in cast("list[Any]", raw)]

    # ------------------------------------------------------------------ reads

    def get(self, event_id: str) -> dict[str, str]:
        """The entry's fields ({} when there is none)."""
        return text_map(self.redis.hgetall(self.event_key(event_id)))

    def backlog(self) -> Backlog:
        """Pending events and the oldest one's age."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.pending_key)
        pipe.zrange(self.pending_key, 0, 0, withscores=True)
        count, oldest = pipe.execute()
        first = cast("list[tuple[Any, float]]", oldest)
        age = max(0.0, self.clock() - float(first[0][1])) if first else 0.0
        return Backlog(int(count), age)

    def of_subject(self, scope: str, subject: str) -> list[str]:
        """The ids of the events of one transaction or batch still kept."""
        members = cast("set[Any]", self.redis.smembers(self.subject_key(scope, subject)))
        return sorted(text(m) for m in members)

    # ------------------------------------------------------------------ erasure

    def erase(self, scope: str, subject: str) -> int:
        """Remove every event of one transaction (``tx``) or batch; returns how many."""
        ids = self.of_subject(scope, subject)
        pipe = self.redis.pipeline(transaction=False)
        for evt in ids:
            pipe.delete(self.event_key(evt))
            pipe.zrem(self.due_key, evt)
            pipe.zrem(self.pending_key, evt)
        pipe.delete(self.subject_key(scope, subject))
        replies = pipe.execute()
        return sum(int(r) for r in replies[0 : 3 * len(ids) : 3])


def dead_letter_ref(notice: Notice, event_id: str) -> str:
    """The dead letter of an event is kept under ``<scope>:<subject>:<event id>`` (kind
    ``webhook``), so erasing the transaction or batch finds it by its prefix."""
    return f"{scope_of(notice.type)}:{notice.subject}:{event_id}"
