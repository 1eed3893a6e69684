"""The replica router (least loaded, with prefix-cache affinity bounded by the load balance) and
the pure decisions about replicas: a model's state from theirs, which ones a scale-down stops."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from modelyard.runner.records import ReplicaRecord
from modelyard.runner.replicas import Replica, model_state, prompt_text, victims
from modelyard.runner.routing import BLOCK_CHARS, ReplicaRouter, prefix_keys
from modelyard.schemas import ChatCompletionRequest, ChatMessage, CompletionRequest, TextPart

SYSTEM = "You are a helpful assistant who answers in one sentence. " * 8  # several blocks

loads_st = st.dictionaries(
    st.sampled_from([f"r{i}" for i in range(6)]), st.integers(0, 20), min_size=1
)


def test_prefix_keys_are_chained_per_whole_block() -> None:
    text = "a" * BLOCK_CHARS + "b" * BLOCK_CHARS + "c" * (BLOCK_CHARS - 1)
    keys = prefix_keys(text)
    assert len(keys) == 2  # the partial third block is not a key
    assert prefix_keys(text[: 2 * BLOCK_CHARS]) == keys
    assert prefix_keys("x" + text)[0] != keys[0]
    # Same second block after a different first block: a different key (chained, not per block).
    assert prefix_keys("z" * BLOCK_CHARS + "b" * BLOCK_CHARS)[1] != keys[1]


@given(loads_st, st.text(max_size=600), st.lists(st.text(max_size=600), max_size=5))
def test_the_choice_is_live_and_never_beyond_the_balance(
    loads: dict[str, int], prompt: str, history: list[str]
) -> None:
    router = ReplicaRouter(balance=2)
    for earlier in history:
        router.choose({"r0": 0, "r7": 0}, earlier)  # r7 is not live below
    chosen = router.choose(loads, prompt)
    assert chosen in loads
    assert loads[chosen] <= min(loads.values()) + router.balance


def test_a_shared_prefix_returns_to_its_replica_while_it_is_not_much_busier() -> None:
    router = ReplicaRouter(balance=2)
    first = router.choose({"a": 0, "b": 0, "c": 0}, SYSTEM + "What is the capital of France?")
    loads = {"a": 0, "b": 0, "c": 0, first: 2}
    assert router.choose(loads, SYSTEM + "And of Italy?") == first
    assert router.affinity_hits == 1
    loads[first] = 3  # beyond least + balance: load wins
    assert router.choose(loads, SYSTEM + "And of Spain?") != first


def test_without_a_known_prefix_equal_loads_take_turns() -> None:
    router = ReplicaRouter()
    picks = {router.choose({"a": 1, "b": 1, "c": 5}, f"short {i}") for i in range(4)}
    assert picks == {"a", "b"}


def test_a_forgotten_replica_loses_its_prefixes() -> None:
    router = ReplicaRouter()
    first = router.choose({"a": 0, "b": 0}, SYSTEM)
    router.forget(first)
    assert len(router._owner) == 0
    loads = {"a": 0, "b": 0}
    picks = [router.choose(loads, SYSTEM) for _ in range(2)]
    assert picks[1] == picks[0]  # the first pick was by load, the second follows its prefix
    assert router.affinity_hits == 1


def test_memory_is_bounded() -> None:
    router = ReplicaRouter(capacity=10)
    for i in range(50):
        router.choose({"a": 0}, f"{i:04d}" * BLOCK_CHARS)
    assert len(router._owner) == 10


def test_no_replica_is_an_error() -> None:
    with pytest.raises(ValueError, match="no replica"):
        ReplicaRouter().choose({}, "hi")


def _replicas(*states: str) -> list[ReplicaRecord]:
    return [
        ReplicaRecord(index=i, state=state, error=f"cause {i}")  # type: ignore[arg-type]
        for i, state in enumerate(states)
    ]


def test_a_model_is_ready_while_any_replica_is_and_says_why_when_none_is() -> None:
    assert model_state(_replicas("error", "ready", "loading")) == ("ready", None)
    assert model_state(_replicas("error", "loading")) == ("loading", None)
    assert model_state(_replicas("error", "unresponsive")) == ("unresponsive", "cause 1")
    assert model_state(_replicas("error", "error")) == ("error", "cause 0")


@pytest.mark.anyio
async def test_a_scale_down_stops_broken_replicas_first_then_the_least_busy_newest() -> None:
    replicas = [Replica(i) for i in range(4)]
    for replica, (state, busy) in zip(
        replicas, [("ready", 0), ("ready", 3), ("error", 0), ("ready", 0)], strict=True
    ):
        replica.record.state, replica.record.in_flight = state, busy  # type: ignore[assignment]
        replica.runner = object()  # type: ignore[assignment]
    assert [r.name for r in victims(replicas, 3)] == ["2", "3", "0"]


def test_the_routed_prompt_text_is_what_the_engine_sees_first() -> None:
    chat = ChatCompletionRequest(
        model="m",
        messages=[
            ChatMessage(role="system", content="be brief"),
            ChatMessage(role="user", content=[TextPart(text="hi "), TextPart(text="there")]),
        ],
    )
    assert prompt_text(chat) == "system\nbe brief\nuser\nhi there\n"
    assert prompt_text(CompletionRequest(model="m", prompt="once upon")) == "once upon"
    assert prompt_text(CompletionRequest(model="m", prompt=[1, 2, 3])) == ""
    assert prompt_text(None) == ""
