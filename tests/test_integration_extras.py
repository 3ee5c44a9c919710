"""Each integration sits behind its extra: without the framework, one clear ImportError."""

from __future__ import annotations

import subprocess
import sys

import pytest

INTEGRATIONS = [
    ("chatledger.integrations.openai", "openai", "openai"),
    ("chatledger.integrations.litellm", "litellm", "litellm"),
    ("chatledger.integrations.langchain", "langchain_core", "langchain"),
    ("chatledger.integrations.openai_agents", "agents", "openai-agents"),
    ("chatledger.integrations.otel", "opentelemetry", "otel"),
    ("chatledger.integrations.llama_index", "llama_index", "llama-index"),
]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(("module", "framework", "extra"), INTEGRATIONS)
def test_without_its_framework_an_integration_names_the_pip_install_line(
    module: str, framework: str, extra: str
) -> None:
    """The framework made unimportable: the error says which extra brings it."""
    code = f"""
import sys
sys.modules[{framework!r}] = None  # as if it were not installed
try:
    import {module}
except ImportError as exc:
    print(exc)
else:
    print("imported")
"""
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert f"pip install 'chatledger[{extra}]'" in done.stdout, done.stdout


def test_importing_chatledger_imports_no_framework() -> None:
    """``import chatledger`` (and the integrations package) loads none of the frameworks."""
    frameworks = [framework for _, framework, _ in INTEGRATIONS]
    done = _run(
        "import sys, chatledger, chatledger.integrations, chatledger.integrations.openai_shapes\n"
        f"print([name for name in {frameworks!r} if name in sys.modules])"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
