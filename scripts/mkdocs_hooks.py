"""MkDocs hooks: links from a page to repository files outside docs/.

Pages are also read on a code host, where ``[the loop](../src/pigeon/worker/loop.py)`` is a
useful link; on the built site that file does not exist. Such a link is rewritten to the
file's path in code font when the file exists in the repository, and left alone otherwise,
so a wrong path still fails the strict build.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

LINK = re.compile(r"(?<!!)\[(?P<text>[^\]\n]+)\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"`+[^`]*`+")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    docs = Path(config["docs_dir"]).resolve()
    repo = docs.parent
    here = (docs / page.file.src_path).parent

    def rewrite(m: re.Match[str]) -> str:
        target = m["target"]
        if "://" in target or target.startswith(("mailto:", "/")):
            return m.group(0)
        path = (here / target).resolve()
        if path.is_relative_to(docs) or not path.is_relative_to(repo) or not path.exists():
            return m.group(0)
        shown = path.relative_to(repo).as_posix()
        text = m["text"]
        return f"`{shown}`" if text.strip("`") == shown else f"{text} (`{shown}`)"

    out, fenced = [], False
    for line in markdown.splitlines(keepends=True):
        if FENCE.match(line):
            fenced = not fenced
        if fenced:
            out.append(line)
            continue
        spans = [m.span() for m in CODE_SPAN.finditer(line)]

        def outside_code(m: re.Match[str]) -> str:  # a link written inside `code` stays as it is
            inside = any(a <= m.start() < b for a, b in spans)
            return m.group(0) if inside else rewrite(m)

        out.append(LINK.sub(outside_code, line))
    return "".join(out)
