"""What a process listens on, read from /proc (Linux): shared by the tests that show no engine
opens a side door. Imported by name (``pythonpath`` holds core/tests); it holds no tests."""

from __future__ import annotations

import os
from pathlib import Path

_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp
_ACCEPTING = "00010000"  # __SO_ACCEPTCON: a listening UNIX socket in /proc/net/unix


def socket_inodes(pid: int | str) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def listening(pid: int | str = "self") -> tuple[set[str], set[str]]:
    """The TCP addresses (``ADDR:PORT`` as /proc writes them, in hex) and the UNIX socket paths
    that ``pid`` listens on: /proc/net/{tcp,tcp6,unix} matched against its open socket inodes."""
    inodes = socket_inodes(pid)
    tcp = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == _LISTEN and fields[9] in inodes:
                tcp.add(fields[1])
    unix = set()
    for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) > 7 and fields[6] in inodes and fields[3] == _ACCEPTING:
            unix.add(fields[7])
    return tcp, unix
