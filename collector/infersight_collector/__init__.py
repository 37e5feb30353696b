"""The Infersight collector: OTLP receivers, the spool and inserter, the ClickHouse stores."""

import os


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one), which is
    what sizes the collector's parallel work."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
