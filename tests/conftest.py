"""Shared fixtures: real servers on loopback started by the session (see tests/fixtures/)."""

import os

# Throwaway servers: processes the tests start warn about a Redis that would lose data
# instead of refusing it (tests of the refusal set IDV_MODE=production themselves).
os.environ.setdefault("IDV_MODE", "development")

pytest_plugins = [
    "tests.fixtures.redis",
    "tests.fixtures.s3",
    "tests.fixtures.emulator",
    "tests.fixtures.batch",
    "tests.fixtures.e2e",
]
