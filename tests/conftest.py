"""Shared fixtures: real servers on loopback started by the session (see tests/fixtures/)."""

pytest_plugins = [
    "tests.fixtures.redis",
    "tests.fixtures.s3",
    "tests.fixtures.emulator",
    "tests.fixtures.batch",
    "tests.fixtures.e2e",
]
