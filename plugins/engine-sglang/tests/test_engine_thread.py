"""EngineThread: the engine's start runs in a thread that stays alive until it is released."""

from __future__ import annotations

import threading

import pytest
from modelyard_sglang.engine_thread import EngineThread


def test_the_starting_thread_lives_until_released() -> None:
    started_in: list[threading.Thread] = []

    def start() -> str:
        started_in.append(threading.current_thread())
        return "engine"

    home = EngineThread(start)
    assert home.result() == "engine"
    thread = started_in[0]
    assert thread is not threading.current_thread()
    thread.join(timeout=0.2)
    assert thread.is_alive()  # the engine's processes would get SIGKILL if it ended
    home.release()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_what_the_start_raises_is_raised_to_the_caller() -> None:
    def start() -> None:
        raise ValueError("SGLang says no")

    home = EngineThread(start)
    with pytest.raises(ValueError, match="SGLang says no"):
        home.result()
