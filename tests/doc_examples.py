"""Examples from README.md and docs/: find the fenced code blocks so tests can run them.

A block whose info string names a file (```` ```yaml file=workflows/x.yaml ````) is part of an
example project: tests write it to that path under a temporary directory and use it there. Other
blocks are found by their language (`python`, `yaml`, `console`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
_FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    source: str  # the document, relative to the repository root
    line: int
    language: str
    file: str  # the `file=` attribute, or ""
    body: str

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def blocks(document: Path) -> list[Block]:
    text = document.read_text()
    found = []
    for match in _FENCE.finditer(text):
        words = match["info"].split()
        language = words[0] if words else ""
        attributes = dict(word.split("=", 1) for word in words[1:] if "=" in word)
        found.append(
            Block(
                source=str(document.relative_to(ROOT)),
                line=text.count("\n", 0, match.start()) + 1,
                language=language,
                file=attributes.get("file", ""),
                body=match["body"],
            )
        )
    return found


def write_files(found: list[Block], target: Path) -> list[Path]:
    """Write every `file=` block of `found` under `target`; returns the paths written."""
    written = []
    for block in found:
        if not block.file:
            continue
        path = target / block.file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.body)
        written.append(path)
    return written


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
