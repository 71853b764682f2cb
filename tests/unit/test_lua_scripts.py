"""The one Lua loader: a package's ``lua/`` folder, its prelude where a script asks for it."""

from __future__ import annotations

import pytest

from worker.redisio import NEEDS_PRELUDE, lua_script

PACKAGES = ("worker.batch", "worker.ledger", "worker.ratelimit", "worker.stores")


def test_a_script_that_needs_the_prelude_gets_its_own_package_prelude() -> None:
    for package, name, helper in (
        ("worker.batch", "begin", "local function set_status"),
        ("worker.ledger", "claim", "local FINAL"),
        ("worker.ratelimit", "acquire", "local function clock_now"),
    ):
        source = lua_script(package, name)
        assert source.index(helper) < source.index(NEEDS_PRELUDE), (package, name)
        assert source.count(NEEDS_PRELUDE) == 1


def test_a_script_without_the_marker_is_loaded_as_it_is() -> None:
    assert lua_script("worker.batch", "transition").startswith("-- KEYS: meta.")
    assert lua_script("worker.stores", "lease_release").startswith("-- KEYS: lease.")


@pytest.mark.parametrize("package", PACKAGES)
def test_names_outside_the_folder_and_the_prelude_itself_are_refused(package: str) -> None:
    with pytest.raises(ValueError, match="unknown Lua script"):
        lua_script(package, "nope")
    with pytest.raises(ValueError, match="unknown Lua script"):
        lua_script(package, "prelude")
