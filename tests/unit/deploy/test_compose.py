"""deploy/docker-compose.yml: valid under the Compose specification, and safe to start."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import jsonschema
import pytest

from tests.unit.deploy.files import COMPOSE, compose, project_version
from worker.queues import ALL_QUEUES

SERVICES: dict[str, Any] = compose()["services"]
PROJECT_SERVICES = {name: s for name, s in SERVICES.items() if "build" in s}
ONE_SHOT = {"s3-init"}
LONG_RUNNING = sorted(set(SERVICES) - ONE_SHOT)
# Variables compose must refuse to start without (${VAR:?message}).
REQUIRED = {
    "IDV_ENDPOINT",
    "IDV_ACCESS_KEY_ID",
    "IDV_ACCESS_KEY_SECRET",
    "IDV_CALLBACK_TOKENS",
    "IDV_SUBJECT_KEY",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "MINIO_KMS_SECRET_KEY",
}
# Optional features, off when empty.
OPTIONAL = {"IDV_WEBHOOK_URL", "IDV_WEBHOOK_SECRET", "IDV_SENTRY_DSN"}
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>\w+)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}")


def _compose_spec() -> dict[str, Any]:
    # The Compose specification's schema as vendored by check-jsonschema (Apache-2.0).
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text())
    return schema


def test_file_matches_the_compose_specification() -> None:
    schema = _compose_spec()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = [e.message for e in validator_class(schema).iter_errors(compose())]
    assert errors == []


def test_the_schema_rejects_a_misspelt_key() -> None:
    broken = compose()
    broken["services"]["redis"]["restart_policy"] = "always"
    schema = _compose_spec()
    assert list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))


def test_secrets_have_no_defaults() -> None:
    found: dict[str, set[str]] = {}
    for match in INTERPOLATION.finditer(COMPOSE.read_text()):
        found.setdefault(match["name"], set()).add(match["op"] or "")
    assert set(found) >= REQUIRED
    for name, ops in found.items():
        if name in REQUIRED:
            assert ops == {":?"}, f"{name} must be required everywhere, not {ops}"
        else:
            assert name in OPTIONAL, f"{name} is neither required nor a known optional feature"
            assert ops == {":-"}
    for match in INTERPOLATION.finditer(COMPOSE.read_text()):
        if match["op"] == ":-":
            assert match["arg"] == "", f"{match[0]}: an optional variable defaults to empty"


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_restart_and_report_health(name: str) -> None:
    service = SERVICES[name]
    assert service["restart"] == "unless-stopped"
    test = service["healthcheck"]["test"]
    assert test[0] in {"CMD", "CMD-SHELL"}
    if test[0] == "CMD" and test[1] == "python":
        compile(test[3], f"{name} healthcheck", "exec")


def test_bucket_init_runs_once_before_the_workers() -> None:
    init = SERVICES["s3-init"]
    assert init["command"] == ["idv-worker", "s3", "ensure-bucket"]
    assert init["restart"] == "no"
    assert init["depends_on"]["minio"] == {"condition": "service_healthy"}
    workers = [n for n, s in SERVICES.items() if s.get("command", [])[3:4] == ["worker"]]
    assert workers
    for name in workers:
        depends = SERVICES[name]["depends_on"]
        assert depends["s3-init"] == {"condition": "service_completed_successfully"}
        assert depends["redis"] == {"condition": "service_healthy"}


def test_one_worker_service_per_lane_with_events_and_matching_healthcheck() -> None:
    queues = []
    for service in SERVICES.values():
        command = service.get("command", [])
        if command[:4] != ["celery", "-A", "worker.app", "worker"]:
            continue
        queue = command[command.index("-Q") + 1]
        queues.append(queue)
        lane = queue.removeprefix("idv.")
        assert "-E" in command
        assert command[command.index("-n") + 1] == f"{lane}@%h"
        # %h is the container's hostname, which the shell sees as $HOSTNAME ($$ escapes compose).
        assert f"--destination {lane}@$$HOSTNAME" in service["healthcheck"]["test"][1]
    assert sorted(queues) == sorted(ALL_QUEUES)


def test_one_beat_answering_pings() -> None:
    beats = [s for s in SERVICES.values() if s.get("command", [])[3:4] == ["beat"]]
    assert len(beats) == 1
    command = beats[0]["command"]
    assert "--enable-remote-control" in command
    assert command[command.index("-n") + 1] == "beat@%h"
    assert beats[0].get("deploy", {}).get("replicas", 1) == 1


def test_redis_keeps_every_write() -> None:
    command = " ".join(SERVICES["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command


def test_minio_has_a_kms_key_for_sse_s3() -> None:
    value = SERVICES["minio"]["environment"]["MINIO_KMS_SECRET_KEY"]
    assert value.startswith("${MINIO_KMS_SECRET_KEY:?")


def test_images_are_pinned() -> None:
    for name, service in SERVICES.items():
        image = service["image"]
        assert ":" in image, name
        assert not image.endswith(":latest"), name
        if name in PROJECT_SERVICES:
            assert image == f"idv-worker:{project_version()}"
