"""A round's partition batches reach the batch handlers as runs of one topic: neighbours of
one topic joined, nothing moved past an event of another topic."""

from __future__ import annotations

from leadpact.bus import Message
from leadpact.consumer import _topic_runs


def batch(topic: str, partition: int, *offsets: int) -> list[Message]:
    return [Message(topic, f"L{partition}", b"", partition, offset) for offset in offsets]


def shape(runs: list[list[Message]]) -> list[list[tuple[str, int, int]]]:
    return [[(m.topic, m.partition, m.offset) for m in run] for run in runs]


def test_neighbouring_batches_of_one_topic_become_one_run_in_partition_order() -> None:
    runs = _topic_runs([batch("lead.created", 1, 7, 8), batch("lead.created", 4, 2)])

    assert shape(runs) == [[("lead.created", 1, 7), ("lead.created", 1, 8), ("lead.created", 4, 2)]]


def test_a_batch_of_another_topic_between_keeps_the_runs_apart() -> None:
    runs = _topic_runs(
        [batch("lead.created", 1, 7), batch("lead.activity", 1, 3), batch("lead.created", 4, 2)]
    )

    assert shape(runs) == [
        [("lead.created", 1, 7)],
        [("lead.activity", 1, 3)],
        [("lead.created", 4, 2)],
    ]
