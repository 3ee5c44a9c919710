"""Shell completion for ``chatledger``: a script made from the argument parser itself.

``chatledger --print-completion bash`` prints a bash function completing
commands, their actions, options and the values of options with a fixed set
of choices (``--bucket day``), and file names where a file is wanted; the zsh
script is the same function through zsh's ``bashcompinit``. Made from the
parser, it cannot drift from the commands: a new option completes as soon as
it exists. Nothing needs installing (no argcomplete).
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["completion_script"]

# Values that name files or folders: completed as such.
_FILE_METAVARS = {"FILE", "DIR", "PATH_OR_URL"}


@dataclass
class _Level:
    """What may follow a command path: its words, and what each option's value may be."""

    words: list[str] = field(default_factory=list)
    choices: dict[str, list[str]] = field(default_factory=dict)  # option -> its values
    files: list[str] = field(default_factory=list)  # options whose value is a file
    valued: list[str] = field(default_factory=list)  # other options that take a value


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse offers no public way to walk its parsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _levels(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, _Level]]:
    level = _Level()
    children = _subparsers(parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        if not action.option_strings:
            if action.choices is not None:  # a positional with choices: export KIND
                level.words.extend(str(choice) for choice in action.choices)
            continue
        if action.help == argparse.SUPPRESS:
            continue
        level.words.extend(action.option_strings)
        if action.nargs == 0:
            continue
        if action.choices is not None:
            for option in action.option_strings:
                level.choices[option] = [str(choice) for choice in action.choices]
        elif action.metavar in _FILE_METAVARS:
            level.files.extend(action.option_strings)
        else:
            level.valued.extend(action.option_strings)
    level.words.extend(children)
    yield path, level
    for name, child in children.items():
        yield from _levels(child, f"{path} {name}".strip())


def _bash(parser: argparse.ArgumentParser) -> str:
    levels = dict(_levels(parser))
    paths = " | ".join(shlex.quote(path) for path in levels if path)
    words = "\n".join(
        f"        {shlex.quote(path)}) words={shlex.quote(' '.join(level.words))} ;;"
        for path, level in levels.items()
    )
    values: list[str] = []
    for path, level in levels.items():
        for option, choices in level.choices.items():
            values.append(
                f"        {shlex.quote(f'{path}|{option}')}) "
                f'COMPREPLY=($(compgen -W {shlex.quote(" ".join(choices))} -- "$cur")); return ;;'
            )
        values.extend(
            f"        {shlex.quote(f'{path}|{option}')}) "
            'COMPREPLY=($(compgen -f -- "$cur")); return ;;'
            for option in level.files
        )
        values.extend(
            f"        {shlex.quote(f'{path}|{option}')}) return ;;" for option in level.valued
        )
    cases = "\n".join(values)
    return f"""# chatledger's completion for bash, made by `chatledger --print-completion bash`.
_chatledger() {{
    local cur prev word path="" candidate words i
    COMPREPLY=()
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    # The command words typed so far (chatledger db upgrade): options and values are skipped.
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        candidate="${{path:+$path }}$word"
        case "$candidate" in
            {paths}) path="$candidate" ;;
        esac
    done
    case "$path|$prev" in
{cases}
    esac
    case "$path" in
{words}
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -o default -F _chatledger chatledger
"""


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for ``shell`` (bash or zsh) of the commands ``parser`` knows."""
    script = _bash(parser)
    if shell == "bash":
        return script
    if shell == "zsh":
        return (
            "# chatledger's completion for zsh: the bash function, through bashcompinit.\n"
            "(( $+functions[compdef] )) || { autoload -U +X compinit && compinit; }\n"
            "autoload -U +X bashcompinit && bashcompinit\n" + script
        )
    raise ValueError(f"no completion for {shell!r}: bash or zsh")
