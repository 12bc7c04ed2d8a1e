"""The README stays short, and every link in it and in docs/ leads to a file of this repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_BYTES = 15_000
# Written on other branches and linked from the README ahead of them; drop once they are here.
EXPECTED_ELSEWHERE = {ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "operations.md"}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)
TRACKER_REFERENCE = re.compile(r"\bissues? #?\d+", re.IGNORECASE)


def anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.lower())
    return text.replace(" ", "-")


def links(document: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", document.read_text(encoding="utf-8")))


def test_the_readme_stays_short() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move detail into docs/"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_relative_link_leads_to_a_file_of_the_repository(document: Path) -> None:
    broken = []
    for target in links(document):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # an absolute URL (https:, mailto:) is not a file of ours
        path_part, _, fragment = target.partition("#")
        path = (document.parent / path_part).resolve() if path_part else document
        if not path.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif path in EXPECTED_ELSEWHERE:
            continue
        elif not path.exists():
            broken.append(f"{target}: no such file")
        elif fragment and path.suffix == ".md":
            headings = HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8")))
            if fragment not in {anchor(heading) for heading in headings}:
                broken.append(f"{target}: no such heading in {path.name}")
    assert not broken, f"{document.name}: {broken}"


def test_nothing_points_at_design_notes_outside_the_repository() -> None:
    mentions = [
        f"{path.relative_to(ROOT)}"
        for path in [
            *DOCUMENTS,
            *(ROOT / "deploy").rglob("*.yaml"),
            *(ROOT / "services").rglob("*.py"),
        ]
        if re.search(r"DESIGN\.md|\.\./shared", path.read_text(encoding="utf-8"))
    ]
    assert not mentions


def test_code_and_tests_name_behaviour_not_tracker_issues() -> None:
    mentions = [
        f"{path.relative_to(ROOT)}: {match.group()}"
        for folder in ("services", "tests")
        for path in (ROOT / folder).rglob("*.py")
        for match in TRACKER_REFERENCE.finditer(path.read_text(encoding="utf-8"))
    ]
    assert not mentions
