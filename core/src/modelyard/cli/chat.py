"""`modelyard chat`: talk to a running chat model, streaming tokens as they arrive."""

from __future__ import annotations

from typing import Any

import click

from . import output
from .lifecycle_cmds import connect, sampling, sampling_options, write
from .options import endpoint_option

_QUIT = {"exit", "quit", "/exit", "/quit", "/bye"}


@click.command()
@endpoint_option
@click.option("-u", "--model-uid", required=True)
@click.option("-m", "--message", default=None, help="Send one message, print the reply and exit.")
@click.option("--system", default=None, help="A system prompt to start the conversation with.")
@sampling_options
def chat(
    endpoint: str,
    api_key: str | None,
    model_uid: str,
    message: str | None,
    system: str | None,
    stream: bool,
    max_tokens: int | None,
    temperature: float | None,
) -> None:
    """Chat with a model. Interactive unless --message is given; type `exit` or Ctrl-D to leave."""
    from ..client import ChatModelHandle
    from ..errors import Unsupported

    history: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    config = sampling(max_tokens, temperature)
    with connect(endpoint, api_key) as client:
        handle = client.get_model(model_uid)
        if not isinstance(handle, ChatModelHandle):
            kind = handle.description.get("model_type")
            raise Unsupported(
                f"model {model_uid!r} cannot chat (it is {kind}; abilities: "
                f"{handle.description.get('model_ability')})"
            )
        if message is not None:
            history.append({"role": "user", "content": message})
            reply(handle, history, stream, config)
            return
        output.note(f"Chatting with {model_uid}; type `exit` or press Ctrl-D to leave.")
        while True:
            try:
                text = click.prompt(click.style("you", fg="green", bold=True), prompt_suffix="> ")
            except click.Abort:  # Ctrl-D / Ctrl-C at the prompt: leave quietly
                write("\n")
                return
            if text.strip().lower() in _QUIT:
                return
            history.append({"role": "user", "content": text})
            write(click.style(f"{model_uid}> ", fg="cyan", bold=True))
            try:
                reply(handle, history, stream, config)
            except KeyboardInterrupt:  # stop this answer, keep the conversation
                history.pop()
                write("\n")
                output.note("(interrupted)")


def reply(handle: Any, history: list[dict[str, Any]], stream: bool, config: dict[str, Any]) -> None:
    """Print the assistant's answer (streamed when asked) and append it to ``history``."""
    if not stream:
        result = handle.chat(history, **config)
        content = result["choices"][0]["message"].get("content") or ""
        write(content + "\n")
    else:
        parts: list[str] = []
        thinking = False
        for chunk in handle.chat(history, stream=True, **config):
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("reasoning_content"):
                    thinking = True
                    write(click.style(delta["reasoning_content"], dim=True))
                if delta.get("content"):
                    if thinking:
                        write("\n")
                        thinking = False
                    parts.append(delta["content"])
                    write(delta["content"])
        content = "".join(parts)
        write("\n")
    history.append({"role": "assistant", "content": content})
