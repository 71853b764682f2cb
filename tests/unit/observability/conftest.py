"""Every test here gets process-wide logging back as it found it."""

from tests.unit.observability.logstate import restore_logging

__all__ = ["restore_logging"]
