"""The stale-upload sweep is scheduled by beat, on a registered task of the archival lane."""

from __future__ import annotations

import importlib

from worker.app import celery_config, create_app
from worker.queues import QUEUE_ARCHIVAL, ROUTES, TASK_MODULES, TASK_SWEEP_UPLOADS
from worker.settings import load_settings


def test_beat_runs_the_sweep_every_configured_period() -> None:
    settings = load_settings(s3_upload_sweep_every_s=900, s3_stale_upload_age_s=7200)
    entry = celery_config(settings)["beat_schedule"]["sweep-stale-uploads"]
    assert entry["task"] == TASK_SWEEP_UPLOADS == "idv.archival.sweep_uploads"
    assert entry["schedule"] == 900.0
    assert entry["options"]["expires"] == 900.0


def test_the_sweep_task_is_registered_and_routed_to_the_archival_lane() -> None:
    assert "tasks.storage" in TASK_MODULES
    app = create_app(load_settings())
    for module in TASK_MODULES:
        importlib.import_module(module)
    assert TASK_SWEEP_UPLOADS in app.tasks
    assert ROUTES["idv.archival.*"] == QUEUE_ARCHIVAL
    assert app.amqp.router.route({}, TASK_SWEEP_UPLOADS)["queue"].name == QUEUE_ARCHIVAL
