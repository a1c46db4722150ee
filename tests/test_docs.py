"""Every code snippet in README.md and docs/ runs, as a user would paste it.

A README example once crashed on first use because no test called the API the way the
docs showed it. So:

- every ```` ```python ```` block runs in a fresh interpreter, in an empty directory,
  with nothing but the installed package (a block that is not meant to run on its own
  must not be marked ``python``; mark it ``text``, and prefer making it runnable);
- every ``sessionshare …`` line of a ```` ```sh ```` block is parsed by the real command
  line (subcommand and options must exist; nothing is started).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from sessionshare.cli.main import cli

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
_BLOCK = re.compile(r"^```(\w[\w-]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(language: str) -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in _BLOCK.finditer(text):
            if match[1] == language:
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{path.relative_to(REPO)}:{line}", match[2]))
    return found


PYTHON = _blocks("python")
SHELL = _blocks("sh")


def test_the_docs_have_snippets() -> None:
    """The collection itself can break (a renamed file, a new fence style)."""
    assert len(PYTHON) >= 5, [where for where, _ in PYTHON]
    assert len(SHELL) >= 5


@pytest.mark.parametrize(("where", "code"), PYTHON, ids=[where for where, _ in PYTHON])
def test_python_snippet_runs(where: str, code: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONSHARE_")}
    env["PYTHONPATH"] = str(REPO)  # examples/ is importable, as from a checkout
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, f"{where} failed:\n{code}\n--- stderr ---\n{result.stderr}"


def _commands() -> list[tuple[str, list[str]]]:
    commands = []
    for where, code in SHELL:
        for line in code.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            for part in re.split(r"&&|\||>", line):
                words = shlex.split(part.strip(), comments=True)
                if words and words[0].endswith("sessionshare") and len(words) > 1:
                    commands.append((where, words[1:]))
    return commands


COMMANDS = _commands()


@pytest.mark.parametrize(("where", "args"), COMMANDS, ids=[" ".join(a) for _, a in COMMANDS])
def test_shell_command_parses(where: str, args: list[str]) -> None:
    """The subcommand and its options exist, and their values are accepted."""
    command = cli.get_command(click.Context(cli), args[0])
    assert command is not None, f"{where}: no such command: sessionshare {args[0]}"
    try:
        command.make_context(args[0], args[1:])
    except click.exceptions.Exit:
        pass  # --help, --version
    except click.UsageError as exc:
        pytest.fail(f"{where}: sessionshare {' '.join(args)}: {exc}")
