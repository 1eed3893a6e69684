"""torch.distributed's rendezvous store for SGLang's scheduler, listening on loopback only.

SGLang's scheduler joins its (one-process) torch.distributed group through a TCPStore on
``nccl_port``, and torch's TCPStore server listens on every interface (``[::]``): anyone who reaches
the machine could read and write its keys. Instead the runner binds the port on 127.0.0.1 itself,
hands the listening socket to a TCPStore server it keeps, and tells torch in SGLang's processes to
join it as clients (``TORCHELASTIC_USE_AGENT_STORE``, torchelastic's switch for exactly this).
"""

from __future__ import annotations

import os
import socket
from typing import Any


class LoopbackStore:
    def __init__(self) -> None:
        from torch.distributed import TCPStore

        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self.port = int(listener.getsockname()[1])
        # The store owns the socket from here (detach: Python must not close it under the store).
        self._store: Any = TCPStore(
            "127.0.0.1",
            self.port,
            is_master=True,
            master_listen_fd=listener.detach(),
            use_libuv=False,  # the libuv server does not take a listening socket
            wait_for_workers=False,
            multi_tenant=True,
        )
        os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "True"

    def close(self) -> None:
        """After the engine is down: stop the store's server."""
        self._store = None
