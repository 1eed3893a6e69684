"""The server's security settings, in one value that ``create_app`` receives.

``Security()`` is safe by default: no key needed (there is none), only loopback ``Host`` names
accepted, no CORS, local model paths only under the default model roots, no remote code.
``Security.from_options`` builds it from ``modelyard serve``'s options and the environment.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..keys import Keys, KeyStore, configured_keys
from ..roots import default_model_roots

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts_for(bind: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The ``Host`` names accepted (any port): loopback names, the bound address, and ``extra``.

    Bound to every interface (0.0.0.0 or ::) with no ``--allowed-host``, any name is accepted:
    the machine's names are not knowable here; the start-up warning says to set them."""
    hosts = [h.strip().lower() for h in extra if h.strip()]
    if bind in WILDCARD_BINDS and not hosts:
        return ("*",)
    hosts += list(LOOPBACK_HOSTS)
    if bind not in WILDCARD_BINDS:
        hosts.append(bind.lower() if ":" not in bind else f"[{bind.strip('[]').lower()}]")
    return tuple(dict.fromkeys(hosts))


@dataclass
class Security:
    keys: Keys = field(default_factory=Keys)
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    cors_origins: tuple[str, ...] = ()
    metrics_open: bool = False
    model_roots: tuple[Path, ...] | None = None  # None: default_model_roots() when asked
    allow_remote_code: bool = False

    def roots(self) -> tuple[Path, ...]:
        return self.model_roots if self.model_roots is not None else default_model_roots()

    @classmethod
    def from_options(
        cls,
        *,
        host: str = "127.0.0.1",
        api_keys: Sequence[str] = (),
        allowed_hosts: Sequence[str] = (),
        cors_origins: Sequence[str] = (),
        metrics_open: bool = False,
        model_roots: Sequence[str] = (),
        allow_remote_code: bool = False,
        env: dict[str, str] | None = None,
    ) -> Security:
        env = dict(os.environ) if env is None else env
        roots = tuple(Path(r).expanduser().resolve() for r in model_roots)
        return cls(
            keys=Keys(configured_keys(api_keys, env), KeyStore()),
            allowed_hosts=allowed_hosts_for(host, allowed_hosts),
            cors_origins=tuple(o.strip().rstrip("/") for o in cors_origins if o.strip()),
            metrics_open=metrics_open,
            model_roots=roots or None,
            allow_remote_code=allow_remote_code,
        )
