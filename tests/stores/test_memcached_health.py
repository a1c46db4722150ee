"""The prober's recovery hook: called when a node is back, and again until it finishes.

The probe itself is injected (``probe=``): these tests are about what the prober does
with its answers. Real memcached processes are killed and restarted in
test_memcached_store.py and test_memcached_cluster.py.
"""

from __future__ import annotations

from sessionshare.stores.memcached_health import RETURN_ATTEMPTS, NodeHealth, NodeState
from sessionshare.stores.node_list import NodeSpec

SPECS = [NodeSpec("n1", "127.0.0.1", 11311), NodeSpec("n2", "127.0.0.1", 11312)]


class Probe:
    """What each node answers: its identity (pid@start), or None for no answer."""

    def __init__(self) -> None:
        self.identity: dict[int, str | None] = {11311: "1@100", 11312: "2@100"}

    def __call__(self, spec: NodeSpec, timeout: float) -> str | None:
        return self.identity[spec.port]


def test_a_return_whose_handling_did_not_finish_is_handled_again_next_round() -> None:
    probe, calls = Probe(), []
    answers = iter([False, True])  # the first pass could not finish, the second did

    def on_return(node: str) -> bool:
        calls.append(node)
        return next(answers)

    health = NodeHealth(SPECS, probe_timeout=0.1, probe=probe, on_return=on_return)
    health.probe_all()
    assert calls == []  # first sight of both nodes: nothing came back
    probe.identity[11311] = "7@200"  # n1 restarted between two rounds: its data is gone
    health.probe_all()
    assert calls == ["n1"] and set(health.returning) == {"n1"}
    health.probe_all()
    assert calls == ["n1", "n1"] and not health.returning
    health.probe_all()
    assert calls == ["n1", "n1"]  # finished: not called again


def test_a_failing_return_handler_is_retried_and_survives_the_node_going_down_again() -> None:
    probe, calls = Probe(), []

    def on_return(node: str) -> bool:
        calls.append(node)
        if len(calls) == 1:
            raise OSError("the other node did not answer")
        return True

    health = NodeHealth(SPECS, probe_timeout=0.1, probe=probe, on_return=on_return)
    health.probe_all()
    probe.identity[11312] = None
    health.probe_all()
    assert health.state["n2"] is NodeState.DOWN
    probe.identity[11312] = "2@100"
    health.probe_all()  # back: the handler raises
    assert calls == ["n2"] and set(health.returning) == {"n2"}
    probe.identity[11312] = None
    health.probe_all()  # down again before the retry: nothing to do meanwhile
    assert calls == ["n2"]
    probe.identity[11312] = "2@100"
    health.probe_all()
    assert calls == ["n2", "n2"] and not health.returning


def test_a_return_that_never_finishes_is_given_up_after_a_bounded_number_of_rounds() -> None:
    probe, calls = Probe(), []

    def on_return(node: str) -> bool:
        calls.append(node)
        return False  # a node that can never be listed, say

    health = NodeHealth(SPECS, probe_timeout=0.1, probe=probe, on_return=on_return)
    health.probe_all()
    probe.identity[11311] = "7@200"
    for _ in range(RETURN_ATTEMPTS + 5):
        health.probe_all()
    assert calls == ["n1"] * RETURN_ATTEMPTS and not health.returning
