"""Every code block in README.md and docs/ runs as a reader would run it.

The conventions (docs/contributing.md explains them to writers):

- A ```python (or ```py) block is a script. The blocks of one page run in order, each as
  ``python example.py`` in a fresh process, all in one temporary directory per page (so a page
  is followed top to bottom, as a reader in one directory would).
- An ```output block right after a block is what the block prints to stdout; ``...`` in it
  matches any text. A Python block writes nothing to stderr (a logged warning or error in an
  example is a bug) unless a ```stderr block after it (and after its output block) says what.
- An HTML comment right before a block changes what happens to it:
  ``<!-- file: path/name.py -->`` writes the block to that file instead of running it,
  ``<!-- append: path -->`` adds it to the end of that file;
  ``<!-- run -->`` before a ```console block runs each ``$ command`` line in the page's
  directory (the lines after a command are its expected output, ``...`` as above);
  ``<!-- skip: reason -->`` does not run the block, and the reason is reported as a skip.
- A Python block with no marker runs; a console block with no marker is not run (most show
  commands that need a server or run forever). Other languages are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
PYTHON = ("python", "py")
FENCE = re.compile(
    r"(?:<!--\s*(?P<marker>[a-z]+)(?::\s*(?P<arg>.*?))?\s*-->\s*\n)?"
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$"
    r"(?P<output>\s*\n[ \t]*```output[ \t]*\n(?P<expected>.*?)^[ \t]*```[ \t]*$)?"
    r"(?P<errors>\s*\n[ \t]*```stderr[ \t]*\n(?P<stderr>.*?)^[ \t]*```[ \t]*$)?",
    re.S | re.M,
)
MARKERS = ("file", "append", "run", "skip")
TIMEOUT = 60.0


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    body: str
    marker: str | None
    arg: str | None
    expected: str | None
    stderr: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(page: Path, root: Path = ROOT) -> list[Block]:
    text = page.read_text()
    found = []
    for m in FENCE.finditer(text):
        indent = len(m["indent"])
        body = "\n".join(line[indent:] for line in m["body"].splitlines()) + "\n"
        expected, stderr = (
            None if text is None else "\n".join(line[indent:] for line in text.splitlines())
            for text in (m["expected"], m["stderr"])
        )
        found.append(
            Block(
                page=str(page.relative_to(root)),
                line=text.count("\n", 0, m.start("lang")) + 1,
                lang=m["lang"],
                body=body,
                marker=m["marker"],
                arg=m["arg"],
                expected=expected,
                stderr=stderr,
            )
        )
    return found


ALL = [b for page in PAGES for b in blocks(page)]


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` is ``expected``, with ``...`` standing for any text, ends stripped."""
    pattern = ".*?".join(re.escape(part) for part in expected.strip().split("..."))
    return re.fullmatch(pattern, actual.strip(), re.S) is not None


def environment(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIGEON_")}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env["PYTHONPATH"] = str(workdir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_python(block: Block, workdir: Path) -> None:
    script = workdir / "example.py"  # what a task defined in the script is named after
    script.write_text(block.body)
    done = subprocess.run(
        [sys.executable, script.name],
        cwd=workdir,
        env=environment(workdir),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    script.unlink()
    assert done.returncode == 0, f"{block.where} exited {done.returncode}:\n{done.stderr}"
    # A warning or an error logged by a page's example is a bug in the page (or in pigeon),
    # unless the page shows it.
    assert matches(block.stderr or "", done.stderr), f"{block.where} wrote to stderr:\n{done.stderr}"
    if block.expected is not None:
        assert matches(block.expected, done.stdout), (
            f"{block.where} printed:\n{done.stdout}\nthe page says:\n{block.expected}"
        )


def console_steps(body: str) -> list[tuple[str, str]]:
    """``$ command`` lines, each with the output lines written under it."""
    steps: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    return [(cmd, "\n".join(out)) for cmd, out in steps]


def run_console(block: Block, workdir: Path) -> None:
    for command, expected in console_steps(block.body):
        done = subprocess.run(
            command,
            shell=True,
            cwd=workdir,
            env=environment(workdir),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert done.returncode == 0, f"{block.where}: `{command}` exited {done.returncode}:\n{done.stderr}"
        if expected.strip():
            assert matches(expected, done.stdout), (
                f"{block.where}: `{command}` printed:\n{done.stdout}\nthe page says:\n{expected}"
            )


def test_every_marker_is_known() -> None:
    unknown = [f"{b.where}: {b.marker}" for b in ALL if b.marker and b.marker not in MARKERS]
    assert not unknown, f"unknown code block markers: {unknown}"
    reasonless = [b.where for b in ALL if b.marker in ("skip", "file", "append") and not b.arg]
    assert not reasonless, f"skip needs a reason, file and append a path: {reasonless}"


def runs(block: Block) -> bool:
    if block.marker in ("skip", "file", "append"):
        return False
    return block.lang in PYTHON or (block.lang == "console" and block.marker == "run")


RUNNABLE = [p for p in PAGES if any(runs(b) for b in blocks(p))]


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    for block in blocks(page):
        if block.marker == "skip":
            continue
        if block.marker == "file":
            target = tmp_path / str(block.arg)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.body)
        elif block.marker == "append":
            with (tmp_path / str(block.arg)).open("a") as f:
                f.write("\n" + block.body)
        elif block.lang in PYTHON:
            run_python(block, tmp_path)
        elif block.lang == "console" and block.marker == "run":
            run_console(block, tmp_path)


SKIPPED = [b for b in ALL if b.marker == "skip"]


@pytest.mark.parametrize("block", SKIPPED, ids=[b.where for b in SKIPPED])
def test_skipped_examples_say_why(block: Block) -> None:
    pytest.skip(f"{block.where}: {block.arg}")


def test_the_extractor_finds_markers_and_output(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Text.\n\n<!-- file: jobs.py -->\n```python\nx = 1\n```\n\n"
        "```python\nprint('hi', 3)\n```\n\n```output\nhi ...\n```\n\n"
        "```python\nimport sys\n```\n\n```stderr\noops\n```\n"
        "<!-- skip: needs a server -->\n```py\nboom\n```\n"
        "- item:\n\n    ```python\n    print(2)\n    ```\n"
    )
    found = [(b.marker, b.arg, b.lang, b.body, b.expected, b.stderr) for b in blocks(page, tmp_path)]
    assert found == [
        ("file", "jobs.py", "python", "x = 1\n", None, None),
        (None, None, "python", "print('hi', 3)\n", "hi ...", None),
        (None, None, "python", "import sys\n", None, "oops"),
        ("skip", "needs a server", "py", "boom\n", None, None),
        (None, None, "python", "print(2)\n", None, None),
    ]
    assert matches("hi ...", "hi 3\n")
    assert not matches("hi 4", "hi 3")
