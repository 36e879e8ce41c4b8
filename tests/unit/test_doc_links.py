"""The README and docs/*.md link only to files of this repository, and every such link works in
a clone: no link leaves the repository (as ``../shared/...`` once did, which exists only on the
machine the project was started on), no link names a file that is not there, and every
``#anchor`` names a heading of its target."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
# Files that another change adds: linked already, and checked like the others once they exist.
# When one of them lands, test_pending_files_are_still_missing says to remove it from here.
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The text without code: a link-like string in a code block or span is not a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def links(doc: Path) -> list[str]:
    text = prose(doc.read_text())
    return INLINE_LINK.findall(text) + REFERENCE_DEFINITION.findall(text)


def relative_links(doc: Path) -> list[str]:
    """Links to files or anchors: not to a URL with a scheme (https:, mailto:)."""
    return [link for link in links(doc) if not SCHEME.match(link)]


def target(doc: Path, link: str) -> tuple[Path, str]:
    """The file a relative link names (a leading / is the repository's root, as on GitHub),
    and its anchor ("" when none)."""
    path, _, anchor = link.partition("#")
    path = unquote(path.partition("?")[0])
    if not path:
        return doc, anchor
    base = ROOT if path.startswith("/") else doc.parent
    return (base / path.lstrip("/")).resolve(), anchor


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lowercase, without punctuation but '-' and '_',
    spaces as '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    found: set[str] = set()
    for heading in HEADING.findall(FENCE.sub("", doc.read_text())):
        base = slug(heading)
        name, count = base, 0
        while name in found:  # repeated headings get -1, -2, ... as on GitHub
            count += 1
            name = f"{base}-{count}"
        found.add(name)
    return found


def doc_id(doc: Path) -> str:
    return str(doc.relative_to(ROOT))


def test_there_are_docs_with_links() -> None:
    # Guards the tests below against passing on nothing (a moved README, a regex that no
    # longer matches).
    assert ROOT / "README.md" in DOCS
    assert sum(len(relative_links(doc)) for doc in DOCS) >= 10


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_no_link_leaves_the_repository(doc: Path) -> None:
    outside = [
        link for link in relative_links(doc) if not target(doc, link)[0].is_relative_to(ROOT)
    ]
    assert outside == [], f"{doc_id(doc)} links outside the repository"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_linked_file_exists(doc: Path) -> None:
    missing = [link for link in relative_links(doc) if not target(doc, link)[0].exists()]
    assert missing == [], f"{doc_id(doc)} links to missing files"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_anchor_names_a_heading(doc: Path) -> None:
    broken = []
    for link in relative_links(doc):
        path, anchor = target(doc, link)
        if anchor and path.suffix == ".md" and path.exists() and anchor not in anchors(path):
            broken.append(link)
    assert broken == [], f"{doc_id(doc)} links to headings that do not exist"


def test_links_that_leave_the_repository_are_caught() -> None:
    # The checks above on a link of the kind this test was written for.
    assert not target(ROOT / "README.md", "../shared/DESIGN.md")[0].is_relative_to(ROOT)
    assert target(ROOT / "docs" / "x.md", "../asyncapi.yaml")[0] == ROOT / "asyncapi.yaml"


def test_slugs_follow_github() -> None:
    assert slug("9. Retrying creates: `Idempotency-Key`") == "9-retrying-creates-idempotency-key"
    assert slug("13. Endpoints outside `/api/v1`") == "13-endpoints-outside-apiv1"
    assert slug("5.5 Replace with PUT") == "55-replace-with-put"
