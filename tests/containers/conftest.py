"""A broker of the container tests' own: fresh groups there must not read other tests' cases."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from lab.harness.kafka import LocalKafka

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A one-node harness broker on 127.0.0.1: containers reach it on the host's network."""
    with LocalKafka(nodes=1, base_dir=tmp_path_factory.mktemp("kafka-containers")) as kafka:
        yield kafka.bootstrap_servers
