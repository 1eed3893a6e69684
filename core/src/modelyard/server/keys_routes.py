"""The key routes (scope ``admin``): list, create and revoke keys in the server's key store.

The same store ``modelyard keys`` edits on the server's machine; a created key is shown once.
"""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..errors import Unsupported
from ..keys import KeyStore, Scope, StoredKey, parse_scopes
from .errors import JSONResponse, decode_body


class CreateKey(msgspec.Struct):
    scopes: list[str] = msgspec.field(default_factory=lambda: ["inference"])
    name: str = ""


_create = msgspec.json.Decoder(CreateKey)


def key_object(record: StoredKey) -> dict[str, Any]:
    fields = msgspec.to_builtins(record)
    fields.pop("sha256", None)  # the hash stays on the server
    return {"object": "api_key", "revoked": None, **fields}


def _store(request: Request) -> KeyStore:
    store: KeyStore | None = request.app.state.security.keys.store
    if store is None:
        raise Unsupported("this server has no key store; give keys with --api-key instead")
    return store


async def list_keys(request: Request) -> Response:
    store = _store(request)
    keys = await anyio.to_thread.run_sync(store.records)
    return JSONResponse({"object": "list", "data": [key_object(k) for k in keys]})


async def create_key(request: Request) -> Response:
    store = _store(request)
    body = await decode_body(request, _create, "key request")
    scopes: tuple[Scope, ...] = parse_scopes(body.scopes)
    key, record = await anyio.to_thread.run_sync(lambda: store.create(scopes, body.name))
    return JSONResponse({**key_object(record), "key": key})


async def revoke_key(request: Request) -> Response:
    store = _store(request)
    key_id = request.path_params["key_id"]
    record = await anyio.to_thread.run_sync(store.revoke, key_id)
    return JSONResponse(key_object(record))
