"""OpenAI Responses API: ``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}``.

Served from the same engines as chat completions: the body is translated to a chat request
(``responses_convert``) and run through ``chat_bridge``. Errors keep the OpenAI shape of the other
``/v1`` routes. Responses are kept (``store``, the default) in a bounded in-memory store
(``responses_store``) so that ``previous_response_id`` can continue a conversation.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..errors import InvalidRequest, ModelyardError
from ..schemas import ChatMessage
from . import chat_bridge
from .errors import JSONResponse, decode_body
from .openai_routes import CLIENT_CLOSED
from .responses_convert import Event, ResponseWriter, input_items, input_messages, to_chat
from .responses_schemas import RESPONSES
from .responses_store import ResponseStore, Stored
from .sse import ClientGone, EventStream


def store_of(request: Request) -> ResponseStore:
    return request.app.state.responses


def frame(events: list[Event]) -> list[bytes]:
    return [
        b"event: " + event["type"].encode() + b"\ndata: " + msgspec.json.encode(event) + b"\n\n"
        for event in events
    ]


async def create_response(request: Request) -> Response:
    body = await decode_body(request, RESPONSES)
    store = store_of(request)
    history: list[ChatMessage] = []
    if body.previous_response_id is not None:
        history = store.get(body.previous_response_id, param="previous_response_id").messages
    chat = to_chat(body, history)
    conversation = [*history, *input_messages(body.input)]
    writer = ResponseWriter(body)

    def remember(response: dict[str, Any]) -> None:
        if body.store:
            messages = [*conversation, *writer.answer_messages()]
            store.put(writer.id, Stored(response, messages, input_items(body.input)))

    try:
        run = await chat_bridge.start(request, chat)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    if body.stream:

        def end() -> list[bytes]:
            events = writer.finish()
            remember(events[-1]["response"])
            return frame(events)

        def fail(exc: ModelyardError) -> list[bytes]:
            return frame(writer.failed(exc.code or exc.type, exc.message))

        feed = lambda chunk: frame(writer.feed(chunk))  # noqa: E731
        return EventStream(chat_bridge.stream(run, frame(writer.start()), feed, end, fail))
    try:
        await chat_bridge.drain(request, run, writer.feed)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    result = writer.result()
    remember(result)
    return JSONResponse(result)


async def get_response(request: Request) -> Response:
    return JSONResponse(store_of(request).get(request.path_params["response_id"]).response)


async def delete_response(request: Request) -> Response:
    response_id = request.path_params["response_id"]
    store_of(request).delete(response_id)
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})


async def list_input_items(request: Request) -> Response:
    """A stored response's input items, OpenAI's cursor list (``order``, ``limit``, ``after``)."""
    items = list(store_of(request).get(request.path_params["response_id"]).inputs)
    query = request.query_params
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be asc or desc", param="order")
    if order == "desc":
        items.reverse()
    after = query.get("after")
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise InvalidRequest(f"no input item {after!r} in this response", param="after")
        items = items[ids.index(after) + 1 :]
    raw = query.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise InvalidRequest("limit must be an integer from 1 to 100", param="limit")
    page = items[: int(raw)]
    return JSONResponse(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > len(page),
        }
    )
