"""The suite's own layout: `make test` collects every tier in one pytest session."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_modules_share_a_name() -> None:
    # The tiers are not packages: pytest imports each module by its basename, and a second
    # module of the same name stops the whole run at collection.
    names = Counter(path.name for path in TESTS.glob("*/test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
