"""A process and everything below it, from /proc: CPU seconds (benchmarks) and resident memory.

A model's runner may fork (vLLM's engine core, a warm-runner template's children), so figures are
taken over the whole tree. Resident memory is the sum of each process's RSS: pages that forked
processes still share are counted once per process, as ``ps`` and ``top`` count them. Off Linux
(no /proc) the answers are empty.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def proc_stats() -> dict[int, tuple[int, float]]:
    """Every process now: pid -> (parent pid, utime + stime in seconds), one read of /proc."""
    stats: dict[int, tuple[int, float]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return stats
    for entry in filter(str.isdigit, entries):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS)
    return stats


def process_tree(pid: int, stats: dict[int, tuple[int, float]] | None = None) -> list[int]:
    """``pid`` and every process below it (a server's runners, their engine processes)."""
    stats = proc_stats() if stats is None else stats
    children: dict[int, list[int]] = {}
    for child, (parent, _) in stats.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo.extend(children.get(found[-1], []))
    return found


def resident_bytes(pid: int) -> int | None:
    """One process's resident memory; None when it is gone (or there is no /proc)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def tree_resident_bytes(
    pid: int | None, stats: dict[int, tuple[int, float]] | None = None
) -> int | None:
    """Resident memory of ``pid``'s whole tree; None when ``pid`` is not running here."""
    if pid is None:
        return None
    own = resident_bytes(pid)
    if own is None:
        return None
    children = (resident_bytes(child) for child in process_tree(pid, stats)[1:])
    return own + sum(size for size in children if size is not None)
