"""Readers for the files under ``deploy/``, and the commands they run, for the deploy tests."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker-compose.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "idv-worker.json"

Doc = dict[str, Any]


def project_version() -> str:
    """``[project] version`` of pyproject.toml: the image tag every manifest must pin."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


def k8s_files() -> list[Path]:
    """The manifest files (every YAML file under deploy/k8s but the kustomization)."""
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_documents() -> list[tuple[str, Doc]]:
    """``(file name, object)`` for every Kubernetes object in deploy/k8s."""
    docs = []
    for path in k8s_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def kustomization() -> Doc:
    loaded: Doc = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return loaded


def pod_spec(doc: Doc) -> Doc | None:
    """The pod spec of a workload (Deployment, Job), else None."""
    if doc["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
        spec: Doc = doc["spec"]["template"]["spec"]
        return spec
    return None


def workloads() -> list[tuple[str, Doc, Doc]]:
    """``(name, object, pod spec)`` of every workload."""
    found = []
    for _, doc in k8s_documents():
        spec = pod_spec(doc)
        if spec is not None:
            found.append((doc["metadata"]["name"], doc, spec))
    return found


def deployments() -> list[tuple[str, Doc, Doc]]:
    return [w for w in workloads() if w[1]["kind"] == "Deployment"]


def compose() -> Doc:
    loaded: Doc = yaml.safe_load(COMPOSE.read_text())
    return loaded


def alerts() -> Doc:
    loaded: Doc = yaml.safe_load(ALERTS.read_text())
    return loaded


def dashboard() -> Doc:
    loaded: Doc = json.loads(DASHBOARD.read_text())
    return loaded


@dataclass(frozen=True)
class Command:
    """One command line a deploy file runs: where it is, and its argv."""

    where: str
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: {shlex.join(self.argv)}"


def _shell_commands(where: str, script: str) -> Iterator[Command]:
    # Only simple scripts are used: commands joined by ; && || or |, optionally exec'd.
    for part in re.split(r";|&&|\|\||\|", script):
        argv = shlex.split(part)
        if argv and argv[0] == "exec":
            argv = argv[1:]
        argv = [a for a in argv if not re.fullmatch(r"\d?>.*", a)]  # redirections
        if argv:
            yield Command(where, tuple(argv))


def _argv_commands(where: str, argv: list[str]) -> Iterator[Command]:
    if len(argv) >= 3 and argv[0] in {"sh", "/bin/sh", "bash"} and argv[1] == "-c":
        yield from _shell_commands(where, argv[2])
    elif argv:
        yield Command(where, tuple(argv))


def k8s_commands() -> Iterator[Command]:
    """Every command the manifests run: container command/args and exec probes."""
    for name, _, spec in workloads():
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            where = f"k8s {name}/{container['name']}"
            argv = [*container.get("command", []), *container.get("args", [])]
            yield from _argv_commands(where, argv)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                command = container.get(probe, {}).get("exec", {}).get("command")
                if command:
                    yield from _argv_commands(f"{where} {probe}", command)


def compose_commands() -> Iterator[Command]:
    """Every command the compose file runs in the project's image: commands and healthchecks."""
    for name, service in compose()["services"].items():
        if "build" not in service:
            continue  # third-party images (redis, minio) run their own programs
        where = f"compose {name}"
        command = service.get("command")
        if isinstance(command, list):
            yield from _argv_commands(where, command)
        test = service.get("healthcheck", {}).get("test")
        if isinstance(test, list) and test and test[0] == "CMD":
            yield from _argv_commands(f"{where} healthcheck", test[1:])
        elif isinstance(test, list) and test and test[0] == "CMD-SHELL":
            yield from _shell_commands(f"{where} healthcheck", test[1])


def all_commands() -> list[Command]:
    return [*k8s_commands(), *compose_commands()]
