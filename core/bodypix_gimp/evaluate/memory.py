"""Peak memory of this process, for the benchmarks (imports nothing heavy: a fresh measured
process reads its base before loading the pipeline)."""

from __future__ import annotations

import sys


def peak_rss_mb() -> float | None:
    """RSS high-water mark of this process in MiB (None where it cannot be read, e.g. Windows).

    Linux: ``VmHWM`` from /proc, which belongs to this program's own memory map.  Not
    ``ru_maxrss``: Linux keeps that across fork+exec, so a child would report its parent's
    peak (the bench parent holds the 24 MP photos) whenever that is the larger one.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere
