"""Every Python snippet of the README runs as a user would copy it.

Each ```python block is written to a file of its own and run with this
interpreter from an empty folder, offline: the OpenAI SDKs (and the
frameworks built on them) read ``OPENAI_BASE_URL``, which points at
chatledger's fake OpenAI server, as the README says the examples do. A
snippet whose database is PostgreSQL reads ``DATABASE_URL``, here a scratch
database (and is marked ``server``). A web app is sent SIGTERM once its
lifespan has started and must run its shutdown. Where a line prints and its
comment shows what (``print(x)  # 1 49``), that is what it must print.

The command-line tour (``console`` blocks) is checked by test_readme_tour.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatledger.testing.fake_openai import FakeOpenAIServer, standard_reply

README = Path(__file__).resolve().parent.parent / "README.md"
_PRINTED = re.compile(r"^\s*print\(.*\)\s+#\s*(?P<shown>\S.*)$")


@dataclass(frozen=True)
class Snippet:
    """One ```python block: its code, the heading it is under and its first line's number."""

    heading: str
    line: int
    code: str

    @property
    def name(self) -> str:
        """How a failure names it: ``Agent and plugin, README.md:262``."""
        return f"{self.heading}, README.md:{self.line}"

    @property
    def needs_server(self) -> bool:
        """Whether it connects to a PostgreSQL database (``DATABASE_URL``, else its own default)."""
        return "postgresql://" in self.code

    @property
    def serves(self) -> bool:
        """Whether it serves HTTP until it is stopped (on the port ``PORT`` names)."""
        return "uvicorn.run(" in self.code

    def shown_output(self) -> list[str]:
        """What the snippet's comments say its prints print, in order."""
        return [m["shown"] for line in self.code.splitlines() if (m := _PRINTED.match(line))]


def snippets(text: str) -> Iterator[Snippet]:
    """Each ```python block of ``text``, under the heading it follows."""
    heading, fence, start, body = "README", None, 0, []
    for number, line in enumerate(text.splitlines(), start=1):
        if fence is None and line.startswith("```"):
            fence, start, body = line[3:].strip(), number, []
        elif fence is not None and line.startswith("```"):
            if fence == "python":
                yield Snippet(heading, start, "\n".join(body) + "\n")
            fence = None
        elif fence is not None:
            body.append(line)
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()


SNIPPETS = list(snippets(README.read_text(encoding="utf-8")))


def _param(snippet: Snippet) -> object:
    marks = [pytest.mark.server] if snippet.needs_server else []
    return pytest.param(snippet, id=snippet.name, marks=marks)


def test_the_readme_has_its_snippets() -> None:
    """The parser finds every block the README has, under its own heading."""
    assert len(SNIPPETS) >= 15
    headings = {snippet.heading for snippet in SNIPPETS}
    assert {"Quick start", "Agent and plugin", "Durability"} <= headings


def test_a_snippet_is_named_by_its_heading_and_line() -> None:
    """A failure says which block failed; the comment after a print is its expected output."""
    text = "# Top\n\n## Here\n\n```python\nprint(1)  # 1\n```\n\n```text\n# not a heading\n```\n"
    (snippet,) = snippets(text)
    assert snippet.name == "Here, README.md:5"
    assert snippet.shown_output() == ["1"]


@pytest.fixture
def scratch_database(request: pytest.FixtureRequest, snippet: Snippet) -> str | None:
    """A PostgreSQL database of this module's own for a snippet that names DATABASE_URL."""
    if not snippet.needs_server:
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.mark.parametrize("snippet", [_param(s) for s in SNIPPETS])
async def test_the_snippet_runs_as_copied(
    snippet: Snippet, scratch_database: str | None, tmp_path: Path
) -> None:
    """Run from an empty folder, against the fake OpenAI server; it exits 0 and prints its lines."""
    script = tmp_path / "snippet.py"
    script.write_text(snippet.code, encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    async with FakeOpenAIServer(fallback=standard_reply) as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}
        for name in ("CHATLEDGER_DATABASE_URL", "DATABASE_URL"):
            env.pop(name, None)
        if scratch_database is not None:
            env["DATABASE_URL"] = scratch_database
        env["PORT"] = "0"  # a web app listens on a free port
        # LiteLLM downloads its price list at import unless told not to; offline, it retries.
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        if "trace_processor" not in snippet.code:
            # The Agents SDK uploads its traces to OpenAI (not OPENAI_BASE_URL) by default;
            # offline, that upload retries at exit. A snippet that records traces replaces it.
            env["OPENAI_AGENTS_DISABLE_TRACING"] = "1"
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(script), cwd=work, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        started = await asyncio.wait_for(_serving(process), 60) if snippet.serves else b""
        out, err = await asyncio.wait_for(process.communicate(), 120)
    err = started + err
    # uvicorn, its shutdown done, ends by the signal it was sent, as a server should.
    expected = -signal.SIGTERM if snippet.serves else 0
    assert process.returncode == expected, f"{snippet.name} failed:\n{err.decode()}"
    if snippet.serves:
        assert b"Application shutdown complete." in err, err.decode()
    printed = out.decode().splitlines()
    for shown in snippet.shown_output():
        assert shown in printed, f"{snippet.name} printed {printed}, not {shown!r}"


async def _serving(process: asyncio.subprocess.Process) -> bytes:
    """Once the app says its lifespan has started, stop it as a process manager would."""
    assert process.stderr is not None
    said = b""
    while b"Application startup complete." not in said:
        line = await process.stderr.readline()
        assert line, f"the app ended before it started serving:\n{said.decode()}"
        said += line
    process.send_signal(signal.SIGTERM)
    return said
