"""Every option of every command says what it does: ``--help`` of each parser renders, every
argument has help text, no meaningless "(default: True)", and the outputs a command cannot
run without are shown as required."""

from __future__ import annotations

import argparse

import pytest

from neurodeploy.cli import build_parser


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """(name, parser) of the top-level parser and of every sub-command, depth first."""
    out, todo = [], [("neurodeploy", build_parser())]
    while todo:
        name, p = todo.pop()
        out.append((name, p))
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                todo += [(f"{name} {sub}", sp) for sub, sp in a.choices.items()]
    return out


PARSERS = _parsers()


def test_walk_finds_every_command():
    names = {n for n, _ in PARSERS}
    assert {"neurodeploy train", "neurodeploy audit", "neurodeploy compare",
            "neurodeploy pipeline", "neurodeploy attack"} <= names


@pytest.mark.parametrize("name,parser", PARSERS, ids=[n for n, _ in PARSERS])
def test_every_option_has_help(name, parser):
    missing = [a.option_strings[0] if a.option_strings else a.dest for a in parser._actions
               if not isinstance(a, argparse._HelpAction)
               and (not a.help or a.help == argparse.SUPPRESS or not a.help.strip())]
    assert missing == [], f"{name}: options without help text: {missing}"
    text = parser.format_help()  # renders (a bare % in a help string would raise here)
    assert "(default: True)" not in text and "(default: False)" not in text, name


def test_a_walk_without_help_would_fail():
    """The check above catches an option added without help."""
    p = argparse.ArgumentParser()
    p.add_argument("--x", default=1)
    assert [a.dest for a in p._actions
            if not isinstance(a, argparse._HelpAction) and not a.help] == ["x"]


@pytest.mark.parametrize("command", ["audit", "export", "compare"])
def test_required_out_shown_as_required(command):
    parser = dict(PARSERS)[f"neurodeploy {command}"]
    usage = " ".join(parser.format_usage().split())
    assert " --out OUT" in usage and "[--out OUT]" not in usage
    out = next(a for a in parser._actions if "--out" in a.option_strings)
    assert out.required and "required" in out.help


def test_eot_defaults_stated_in_help():
    """One story for the EoT defaults: audit 4, attack 10 under the unknown draw."""
    helps = {n: {a.dest: a.help for a in p._actions} for n, p in PARSERS}
    assert "default 4" in helps["neurodeploy audit"]["eot"]
    assert "10 under --threat unknown" in helps["neurodeploy attack"]["eot"]
    audit = dict(PARSERS)["neurodeploy audit"]
    assert next(a for a in audit._actions if a.dest == "eot").default == 4
