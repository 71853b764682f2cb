"""How a bucket adapts: its learned safety margin (``MarginPolicy``) and its rate factor
(``AdaptivePolicy``).

**The margin** says how much of the quota to leave unused.

Slots are spaced ``1 / (quota * (1 - margin))`` apart, so Q+1 grants span ~``margin`` seconds
more than the provider's 1-second window: that room absorbs the jitter between a grant and
the provider counting the request. How much room is needed depends on the network and the
hosts, not on the code, so each bucket learns it (state in Redis, shared by every process;
``lua/prelude.lua`` ``margin_now``):

* **From throttles.** A ``Throttling.*`` answer widens the margin (``widen`` times, at most
  once per ``widen_hold_s``: one episode throttles every request in flight) and remembers the
  margin it struck at. After ``hold_s`` quiet seconds the margin narrows back (half life
  ``half_life_s``) toward its target: ``floor``, or ``hit_factor`` x the margin last throttled
  plus ``hit_step`` while that memory lasts (it fades with half life ``hit_half_life_s``).
* **From the grant-to-send gap.** The client reports when each request left; the gap from its
  slot (mean and mean deviation, weight ``gap_alpha``) sets a lower bound: ``gap_k`` mean
  deviations of spread must fit in the room the lateness tolerance leaves.
* **Bounded** by ``floor`` and ``ceiling``. A bucket starts at the configured
  ``IDV_QUOTA_SAFETY_MARGIN`` and narrows from there. Throttles at the ceiling slow the rate
  itself down (``AdaptivePolicy``): the quota is then used outside this system.

``fixed(margin)`` turns learning off (floor = ceiling = margin).

**The rate factor** scales the rate down when throttles go on with the margin at its ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from worker.settings import QuotaSettings


@dataclass(frozen=True, slots=True)
class MarginPolicy:
    """How a bucket's safety margin is learned (see the module docstring)."""

    floor: float = 0.002
    ceiling: float = 0.10
    hold_s: float = 2.0
    half_life_s: float = 4.0
    hit_half_life_s: float = 1800.0
    hit_factor: float = 1.15
    hit_step: float = 0.002
    gap_k: float = 4.0
    widen: float = 2.0
    widen_hold_s: float = 0.25
    gap_alpha: float = 1 / 32

    def __post_init__(self) -> None:
        if not 0 <= self.floor <= self.ceiling < 0.5:
            raise ValueError("margin bounds must satisfy 0 <= floor <= ceiling < 0.5")
        if self.half_life_s <= 0 or self.hit_half_life_s <= 0:
            raise ValueError("half lives must be > 0")
        if self.hold_s < 0 or self.widen_hold_s < 0:
            raise ValueError("holds must be >= 0")
        if self.widen < 1 or self.hit_factor < 1 or self.hit_step < 0 or self.gap_k < 0:
            raise ValueError("widen and hit_factor must be >= 1, hit_step and gap_k >= 0")
        if not 0 < self.gap_alpha <= 1:
            raise ValueError("gap_alpha must be in (0, 1]")

    @classmethod
    def from_settings(cls, settings: QuotaSettings) -> MarginPolicy:
        """Bounds from ``IDV_QUOTA_MARGIN_FLOOR`` / ``_CEILING``; fixed when learning is off."""
        if not settings.quota_margin_learning:
            return cls.fixed(settings.quota_safety_margin)
        return cls(floor=settings.quota_margin_floor, ceiling=settings.quota_margin_ceiling)

    @classmethod
    def fixed(cls, margin: float) -> MarginPolicy:
        """A margin that never changes."""
        return cls(floor=margin, ceiling=margin)

    def with_bounds(self, floor: float, ceiling: float) -> MarginPolicy:
        """The same policy between other bounds."""
        return replace(self, floor=floor, ceiling=ceiling)

    def arg(self) -> str:
        """The policy as the scripts read it (one ARGV; order as in ``margin_policy``)."""
        values = (
            self.floor,
            self.ceiling,
            self.hold_s,
            self.half_life_s,
            self.hit_half_life_s,
            self.hit_factor,
            self.hit_step,
            self.gap_k,
            self.widen,
            self.widen_hold_s,
            self.gap_alpha,
        )
        return ",".join(repr(float(v)) for v in values)


@dataclass(frozen=True, slots=True)
class AdaptivePolicy:
    """How a bucket reacts to ``Throttling.*``: multiply its rate by ``decrease`` (at most
    once per ``hold_s``, never below ``floor``), then add ``recovery_per_s`` of the full
    rate per second once ``hold_s`` passed without a throttle.

    A lone throttle is as likely to be jitter at the edge of the provider's window as use of
    the quota outside this system, so the step is mild (a one-off costs ~0.2 s of slots) and
    compounds while throttles go on (0.9 per second: half the rate within ~7 s).

    After a second without grants a bucket restarts at ``restart`` of its rate and ramps up
    at ``recovery_per_s``: the first requests after a pause (or of fresh processes) often
    open connections, and that set-up time lands between grant and arrival, where it would
    otherwise eat the margin. It costs ~0.1 s of slots per restart; 1.0 turns it off.
    """

    decrease: float = 0.9
    floor: float = 0.05
    hold_s: float = 1.0
    recovery_per_s: float = 0.05
    restart: float = 0.9

    def __post_init__(self) -> None:
        if not 0 < self.decrease < 1:
            raise ValueError("decrease must be in (0, 1)")
        if not 0 < self.floor <= 1:
            raise ValueError("floor must be in (0, 1]")
        if not 0 < self.restart <= 1:
            raise ValueError("restart must be in (0, 1]")
        if self.hold_s < 0 or self.recovery_per_s <= 0:
            raise ValueError("hold_s must be >= 0 and recovery_per_s > 0")
