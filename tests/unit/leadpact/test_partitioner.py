"""The memory bus puts a key on the partition Kafka's default partitioner would."""

from __future__ import annotations

import random
import uuid

from aiokafka.partitioner import murmur2 as kafka_murmur2

from leadpact.bus.memory import murmur2, partition_for


def test_murmur2_agrees_with_the_kafka_clients_on_every_length() -> None:
    rng = random.Random(7)
    keys = [str(uuid.UUID(int=rng.getrandbits(128))).encode() for _ in range(500)]
    keys += [rng.randbytes(n) for n in range(0, 41) for _ in range(25)]

    assert [murmur2(k) for k in keys] == [kafka_murmur2(k) for k in keys]


def test_a_key_goes_to_the_kafka_partition() -> None:
    for key in ("lead-1", "L-0b7c", "cus_42", "é-unicode"):
        expected = (kafka_murmur2(key.encode()) & 0x7FFFFFFF) % 6
        assert partition_for(key, 6) == expected
