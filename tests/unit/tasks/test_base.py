"""IdvTask's countdown: a provider's retry-after is capped by IDV_MAX_RETRY_AFTER_S."""

from __future__ import annotations

from worker.app import create_app
from worker.cloudauth.errors import ThrottledError
from worker.queues import TASK_PROCESS
from worker.settings import load_settings


def test_a_day_long_retry_after_becomes_a_bounded_countdown() -> None:
    app = create_app(load_settings(max_retry_after_s=45))
    import tasks.onboarding  # noqa: F401  (registers the task on the app)

    task = app.tasks[TASK_PROCESS]
    exc = ThrottledError("slow down", code="Throttling.Api", retry_after=86_400_000 / 1000)
    countdown = task.countdown_for(exc)
    assert 45 <= countdown <= 45 + task.retry_policy.cap_s
    assert countdown < 86_400
