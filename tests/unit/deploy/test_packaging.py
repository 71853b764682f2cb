"""The image and the dev setup install the pinned dependency set (constraints.txt)."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.unit.deploy.files import DEPLOY, ROOT


def _pinned() -> set[str]:
    names = set()
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", line)
        if match:
            names.add(canonicalize_name(match[1]))
    return names


def test_constraints_pin_every_declared_dependency() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    declared = [*project["dependencies"]]
    for extra in ("dev", "server"):
        declared += project["optional-dependencies"][extra]
    missing = sorted(
        name
        for name in {canonicalize_name(Requirement(r).name) for r in declared}
        if name not in _pinned()
    )
    assert missing == [], "dependencies changed: regenerate constraints.txt with make constraints"


def test_license_is_declared_by_spdx_and_shipped() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]


def test_image_installs_with_the_constraints_as_a_numeric_user() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "constraints.txt" in dockerfile.split("RUN pip install", 1)[0]
    assert re.search(r"RUN pip install .*-c constraints\.txt", dockerfile)
    assert re.search(r"^USER 10001(:10001)?$", dockerfile, re.MULTILINE)


def test_make_venv_installs_with_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line and "-e" in line]
    assert installs
    assert all("-c constraints.txt" in line for line in installs)
