"""The operator CLI's shape, without a broker: every command explains itself, usage errors exit
2, errors raised on purpose are one line and exit 1, and the services load only when run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from referrals.tools import cli as cli_module
from referrals.tools.cli import cli, main

REPO = Path(__file__).resolve().parents[2]


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command and group under `command`, as the words that name it."""
    yield path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from walk(sub, (*path, name))


def lookup(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


COMMANDS = list(walk(cli))


def test_the_commands_are_those_the_readme_lists() -> None:
    assert {" ".join(path) for path in COMMANDS} == {
        "",
        "broker",
        "broker start",
        "broker stop",
        "broker status",
        "topics",
        "topics create",
        "acl",
        "acl show",
        "acl apply",
        "publish",
        "tail",
        "program",
        "program validate",
        "program put",
        "program preview",
        "approve",
        "deny",
        "retry",
        "reconcile",
        "tax-report",
        "erase",
        "export",
        "simulate",
        "report",
        "faults",
        "doctor",
        "api",
        "api token",
        "run",
    }


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "referrals")
def test_every_command_option_and_argument_has_help(path: tuple[str, ...]) -> None:
    command = lookup(path)
    assert command.help and command.help.strip(), f"{path}: no help text"
    assert path == () or command.get_short_help_str(limit=80).strip()
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help and param.help.strip(), f"{path}: {param.opts} has no help"
        if isinstance(param, click.Argument):  # click gives arguments no help of their own
            assert param.human_readable_name in command.help, f"{path}: {param.name} not described"


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "referrals")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_works_for_every_command(path: tuple[str, ...], flag: str) -> None:
    result = CliRunner().invoke(cli, [*path, flag], prog_name="referrals")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: {' '.join(('referrals', *path))} ")
    assert lookup(path).help.split()[0] in result.output  # type: ignore[union-attr]


def test_the_top_level_help_tells_how_to_enable_shell_completion() -> None:
    result = CliRunner().invoke(cli, ["--help"], prog_name="referrals")
    for shell in ("bash", "zsh", "fish"):
        assert f"_REFERRALS_COMPLETE={shell}_source referrals" in result.output


def test_completion_offers_the_contracts_topics() -> None:
    env = {"_REFERRALS_COMPLETE": "bash_complete", "COMP_WORDS": "referrals tail referral.s"}
    result = CliRunner().invoke(cli, [], prog_name="referrals", env={**env, "COMP_CWORD": "2"})
    assert result.exit_code == 0
    offered = result.output.splitlines()
    assert "plain,referral.shares.v1" in offered and "plain,referral.status.v1.dlq" in offered
    assert all(line.startswith("plain,referral.s") for line in offered)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nope"],
        ["broker"],
        ["broker", "restart"],
        ["publish", "referral.shares.v1"],
        ["tail", "referral.shares.v1", "--max", "many"],
        ["run", "billing"],
        ["simulate"],
        ["simulate", "--out", "x", "--now", "2026-05-01T12:00"],
        ["approve"],
        ["deny", "po-1", "--timeout", "0"],
        ["retry", "po-1", "--timeout", "soon"],
        ["tax-report"],
        ["tax-report", "--year", "20x6"],
        ["tax-report", "--year", "26"],
    ],
)
def test_a_usage_error_exits_2(argv: list[str]) -> None:
    assert main(argv) == 2


def test_help_exits_0_through_main() -> None:
    assert main(["--help"]) == 0


def test_an_expected_error_is_one_line_on_stderr_and_exit_1(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = CliRunner().invoke(cli, ["program", "validate", str(missing)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("referrals program: ")
    assert str(missing) in result.stderr and len(result.stderr.splitlines()) == 1


def test_an_invalid_program_document_names_each_problem_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("program_id: p\ncurrency: EURO\nrewards: {tiers: []}\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["program", "validate", str(bad)])
    assert result.exit_code == 1
    assert result.stderr.startswith("referrals program: ") and "currency" in result.stderr


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def interrupted(path: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "load_program", interrupted)
    assert main(["program", "validate", str(tmp_path / "p.yaml")]) == 130


def test_fewer_than_one_advocate_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["simulate", "--advocates", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == "referrals simulate: --advocates must be at least 1\n"


def test_broker_status_exits_3_when_no_broker_runs(tmp_path: Path) -> None:
    argv = ["broker", "status", "--port", "1", "--data-dir", str(tmp_path)]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 3
    state = json.loads(result.stdout)
    assert state["running"] is False and state["data_dir"] == str(tmp_path.resolve())


def test_the_cli_loads_no_service_until_one_runs() -> None:
    probe = (
        "import sys, referrals.tools.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith('services')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_a_bad_year_is_named_in_the_usage_error() -> None:
    result = CliRunner().invoke(cli, ["tax-report", "--year", "20x6"])
    assert result.exit_code == 2
    assert "Invalid value for '--year': '20x6' is not a valid integer" in result.stderr
    result = CliRunner().invoke(cli, ["tax-report", "--year", "1999"])
    assert "1999 is not in the range 2000<=x<=9999" in result.stderr
