"""The hub's murmur2 partitions every key as Kafka's clients do."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.core.partitioner import KeyPartitioner, murmur2

# The Java client's own test vectors (UtilsTest, testMurmur2), signed as Java returns them.
JAVA_CLIENT_VECTORS = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


@pytest.mark.parametrize(("text", "expected"), JAVA_CLIENT_VECTORS.items())
def test_murmur2_agrees_with_the_java_client(text: str, expected: int) -> None:
    assert murmur2(text.encode()) == expected & 0xFFFFFFFF


@settings(max_examples=2000)
@given(st.binary(max_size=300))
def test_murmur2_agrees_with_aiokafka_for_any_bytes(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=200))
def test_a_key_gets_the_partition_aiokafka_gives_it(key: bytes, count: int) -> None:
    partitions = list(range(count))
    assert KeyPartitioner()(key, partitions, partitions) == DefaultPartitioner()(
        key, partitions, partitions
    )


def test_an_unkeyed_record_goes_to_an_available_partition() -> None:
    picks = {KeyPartitioner()(None, [0, 1, 2, 3], [1, 3]) for _ in range(200)}
    assert picks == {1, 3}
    assert KeyPartitioner()(None, [0, 1], []) in {0, 1}
