"""API keys: the ones given to ``modelyard serve`` and the key store under ``MODELYARD_HOME``.

A key is ``my-<id>-<secret>``; the store (``<home>/keys.json``, mode 0600) keeps only the id, a name,
the scopes and the SHA-256 of the whole key, so a leaked store file gives no key away. Revoked keys
stay in the store, marked: a store that ever held a key keeps the server locked after the last one
is revoked, instead of opening it. The server re-reads the store when its modification time or size
changes, so ``modelyard keys revoke`` takes effect on the next request, without a restart.

Keys given on the command line (``--api-key``) or in ``MODELYARD_API_KEYS`` (comma separated) are
any string; ``KEY:inference,manage`` limits one to those scopes, otherwise it has them all.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import msgspec

from .errors import InvalidRequest, ModelyardError, NotFound
from .home import home_dir, write_atomic

Scope = Literal["inference", "manage", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
KEYS_ENV = "MODELYARD_API_KEYS"
PREFIX = "my-"


class StoredKey(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    name: str = ""
    scopes: tuple[Scope, ...]
    sha256: str
    created: float
    revoked: float | None = None


class _StoreFile(msgspec.Struct):
    keys: list[StoredKey] = []


@dataclass(frozen=True)
class Principal:
    """Who a valid key belongs to: a stored key's id, or ``config`` for a key given at start."""

    key_id: str
    scopes: frozenset[str]


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def parse_scopes(values: Iterable[str]) -> tuple[Scope, ...]:
    found: list[Scope] = []
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if not name:
                continue
            if name not in SCOPES:
                raise InvalidRequest(
                    f"unknown scope {name!r}; scopes are {', '.join(SCOPES)}", param="scopes"
                )
            if name not in found:
                found.append(name)
    return tuple(found)


def parse_configured(raw: str) -> tuple[str, frozenset[str]]:
    """``KEY`` (every scope) or ``KEY:scope,scope``."""
    key, sep, tail = raw.strip().rpartition(":")
    if sep and key and tail and all(p.strip().lower() in SCOPES for p in tail.split(",")):
        return key, frozenset(parse_scopes([tail]))
    return raw.strip(), frozenset(SCOPES)


def configured_keys(cli_keys: Sequence[str] = (), env: dict[str, str] | None = None) -> list[str]:
    env = dict(os.environ) if env is None else env
    keys = [k for k in cli_keys if k.strip()]
    keys += [k for k in env.get(KEYS_ENV, "").split(",") if k.strip()]
    return keys


def store_path() -> Path:
    return home_dir() / "keys.json"


class KeyStore:
    """The key file; every read notices a change on disk (mtime and size), so revocation is live."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or store_path()
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._keys: list[StoredKey] = []

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def records(self) -> list[StoredKey]:
        stat = self._stat()
        with self._lock:
            if stat != self._seen:
                try:
                    self._keys = (
                        msgspec.json.decode(self.path.read_bytes(), type=_StoreFile).keys
                        if stat is not None
                        else []
                    )
                except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                    # Fail closed: no request passes on a store nobody can read.
                    raise ModelyardError(
                        f"the API key store {self.path} cannot be read ({exc}); fix it, or "
                        "remove it and create the keys again with `modelyard keys create`"
                    ) from None
                self._seen = stat
            return self._keys

    def _write(self, keys: list[StoredKey]) -> None:
        data = msgspec.json.format(msgspec.json.encode(_StoreFile(keys)))
        write_atomic(self.path, data)
        os.chmod(self.path, 0o600)

    def create(self, scopes: Sequence[Scope], name: str = "") -> tuple[str, StoredKey]:
        """A new key: returns the key itself (shown once, never stored) and its record."""
        if not scopes:
            raise InvalidRequest("a key needs at least one scope: " + ", ".join(SCOPES))
        key_id = secrets.token_hex(4)
        key = f"{PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
        record = StoredKey(
            id=key_id,
            name=name,
            scopes=tuple(scopes),
            sha256=digest(key).hex(),
            created=time.time(),
        )
        self._write([*self.records(), record])
        return key, record

    def revoke(self, key_id: str) -> StoredKey:
        keys = list(self.records())
        for index, record in enumerate(keys):
            if record.id == key_id or (key_id.startswith(PREFIX) and key_id[3:11] == record.id):
                if record.revoked is None:
                    keys[index] = msgspec.structs.replace(record, revoked=time.time())
                    self._write(keys)
                return keys[index]
        known = ", ".join(k.id for k in keys if k.revoked is None) or "none"
        raise NotFound(f"no API key with id {key_id!r} (active keys: {known})", param="key_id")


class Keys:
    """Every key the server accepts: the configured ones and the store's active ones."""

    def __init__(self, configured: Sequence[str] = (), store: KeyStore | None = None) -> None:
        self._configured = [(digest(k), scopes) for k, scopes in map(parse_configured, configured)]
        self.store = store

    def enabled(self) -> bool:
        """Auth is on when any key was configured or the store ever held one (revoked included)."""
        return bool(self._configured) or bool(self.store is not None and self.store.records())

    def check(self, key: str) -> Principal | None:
        presented = digest(key)
        found: Principal | None = None
        # Compare against every configured key, in constant time each, without stopping early.
        for index, (expected, scopes) in enumerate(self._configured):
            if hmac.compare_digest(presented, expected) and found is None:
                found = Principal(f"config#{index + 1}", scopes)
        if found is not None or self.store is None:
            return found
        for record in self.store.records():
            if hmac.compare_digest(presented.hex(), record.sha256) and record.revoked is None:
                found = Principal(record.id, frozenset(record.scopes))
        return found
