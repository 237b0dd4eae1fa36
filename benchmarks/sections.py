"""Generated sections of a markdown file, between `<!-- NAME:begin -->` and `<!-- NAME:end -->`.

Each benchmark script owns its section: it replaces that section and leaves the rest of the file
as it was, so RESULTS.md can hold the output of several scripts, each regenerated on its own.
"""

from __future__ import annotations

import re
from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def replace_section(path: Path, name: str, body: str) -> None:
    """Put `body` between the markers of `name` in `path` (appended, with markers, if absent)."""
    begin, end = markers(name)
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def sections(text: str) -> list[str]:
    """Every marked block in `text`, markers included (to carry over when a file is rewritten)."""
    pattern = r"<!-- ([\w-]+):begin -->.*?<!-- \1:end -->"
    return [m.group(0) for m in re.finditer(pattern, text, re.DOTALL)]
