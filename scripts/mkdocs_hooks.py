"""MkDocs hooks: pages missing from the navigation, links to repository files outside docs/.

A page added to docs/ without a place in mkdocs.yml's ``nav`` is listed under "More",
with a note in the build's log, rather than failing the strict build: pages written
alongside code changes appear on the site at once, and get their proper place later.

Pages are also read on a code host, where ``[the loop](../src/pigeon/worker/loop.py)`` is a
useful link; on the built site that file does not exist. Such a link is rewritten to the
file's path in code font when the file exists in the repository, and left alone otherwise,
so a wrong path still fails the strict build.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

LINK = re.compile(r"(?<!!)\[(?P<text>[^\]\n]+)\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"`+[^`]*`+")


log = logging.getLogger("mkdocs.hooks.pigeon")


def _listed(nav: Any) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, dict):
        return set().union(*(_listed(v) for v in nav.values()))
    if isinstance(nav, list):
        return set().union(*(_listed(v) for v in nav))
    return set()


def on_config(config: Any) -> Any:
    if not config["nav"]:
        return config
    docs = Path(config["docs_dir"])
    pages = {p.relative_to(docs).as_posix() for p in docs.rglob("*.md")}
    missing = sorted(pages - _listed(config["nav"]))
    if missing:
        log.info("not in mkdocs.yml's nav, listed under More: %s", ", ".join(missing))
        config["nav"].append({"More": missing})
    return config


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
        out.append(LINK.sub(functools.partial(_outside_code, spans, rewrite), line))
    return "".join(out)


def _outside_code(
    spans: list[tuple[int, int]], rewrite: Callable[[re.Match[str]], str], m: re.Match[str]
) -> str:
    """A link written inside `code` stays as it is."""
    return m.group(0) if any(a <= m.start() < b for a, b in spans) else rewrite(m)
