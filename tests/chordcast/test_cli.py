"""Bad input on the command line: one clear line and a non-zero status, never a traceback."""

from __future__ import annotations

import argparse
import socket
from collections.abc import Iterator

import pytest

from chordcast.cli.common import vias
from chordcast.cli.main import main


def closed_port() -> int:
    """A loopback port with nothing listening (bound and released by us)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "argv",
    [
        ["lookup", "k", "--via", "not-an-address"],
        ["lookup", "k", "--via", "127.0.0.1:99999"],
        ["lookup", "k", "--via", "::1:5000"],
        ["get", "k", "--via", "host:port"],
        ["node", "--listen", "127.0.0.1"],
        ["node", "--listen", "127.0.0.1:0", "--id-bits", "200"],
        ["node", "--listen", "127.0.0.1:0", "--id-bits", "two"],
        ["node", "--listen", "127.0.0.1:0", "--successors", "0"],
        ["node", "--listen", "127.0.0.1:0", "--metrics-port", "99999"],
        ["cluster", "--metrics-port", "-1"],
        ["node", "--listen", "127.0.0.1:0", "--join", "nowhere"],
        ["lookup", "--via", "127.0.0.1:5000"],
        ["put", "k", "--via", "127.0.0.1:5000"],
    ],
)
def test_usage_errors_exit_2_with_one_line_naming_the_command(argv: list[str], capsys
                                                               ) -> None:
    assert status(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"chordcast {argv[0]}: ") and err.count("\n") == 1, err


def status(argv: list[str]) -> int:
    """The exit status `chordcast ARGV` ends with (argparse's errors exit from inside)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize("argv", [
    ["group", "join", "g", "--count", "0", "--via", "127.0.0.1:5000"],
    ["group", "join", "g", "--count", "-1", "--via", "127.0.0.1:5000"],
    ["ring", "--timeout", "0", "--via", "127.0.0.1:5000"],
    ["group", "join", "g", "--from-seq", "-3", "--via", "127.0.0.1:5000"],
])
def test_counts_and_durations_are_checked(argv: list[str], capsys) -> None:
    assert status(argv) == 2
    err = capsys.readouterr().err
    command = " ".join(argv[:2] if argv[0] == "group" else argv[:1])
    assert err.startswith(f"chordcast {command}: ") and "must be" in err, err


def test_via_comes_from_the_environment_when_not_given(monkeypatch, capsys) -> None:
    monkeypatch.delenv("CHORDCAST_VIA", raising=False)
    assert status(["ring"]) == 2
    assert "give --via HOST:PORT (any node of the ring), or set CHORDCAST_VIA" in (
        capsys.readouterr().err)
    port = closed_port()
    monkeypatch.setenv("CHORDCAST_VIA", f"127.0.0.1:{port}")
    assert status(["ring"]) == 1  # used: it is the node that does not answer
    assert f"127.0.0.1:{port}" in capsys.readouterr().err


def test_version_and_json_before_the_command(capsys) -> None:
    assert status(["--version"]) == 0
    assert capsys.readouterr().out.startswith("chordcast ")
    from chordcast.cli.main import build_parser

    assert build_parser().parse_args(["--json", "ring", "--via", "h:1"]).json is True
    assert build_parser().parse_args(["ring", "--json", "--via", "h:1"]).json is True
    assert build_parser().parse_args(["ring", "--via", "h:1"]).json is False


def test_unreachable_node_is_one_clear_line(capsys) -> None:
    port = closed_port()
    assert main(["lookup", "k", "--via", f"127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and f"127.0.0.1:{port}" in err and "\n" not in err


def test_oversized_file_value_is_refused_before_sending(tmp_path, capsys) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * ((1 << 20) + 1))
    port = closed_port()  # never contacted: the size check comes first
    assert main(["put", "k", "--file", str(big), "--via", f"127.0.0.1:{port}"]) == 1
    assert "1 MiB" in capsys.readouterr().err


def test_missing_file_is_a_usage_error(tmp_path, capsys) -> None:
    assert status(["put", "k", "--file", str(tmp_path / "nope"), "--via", "127.0.0.1:5000"]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.slow
def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    """`chordcast get big | head -c 10`: no BrokenPipeError traceback, exit 0."""
    import subprocess
    import sys

    from chordcast.blocking import BlockingClient
    from chordcast.localring import LocalRing

    ring = LocalRing()
    with ring.running(2):
        via = ring.live()[0].address
        with BlockingClient(via) as client:
            client.put("big", b"\x00" * (1 << 20))  # printed as ~1.4 MB of base64
        for command in (["get", "big"], ["get", "big", "--json"]):
            shell = (f"'{sys.executable}' -m chordcast {' '.join(command)} --via {via}"
                     " | head -c 10 > /dev/null; echo ${PIPESTATUS[0]}")
            done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True,
                                  timeout=60)
            assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
            assert done.stdout.strip() == "0", (command, done.stdout, done.stderr)


def _parsers(p: argparse.ArgumentParser, path: str
             ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield from _parsers(sp, f"{path} {name}")


def test_every_option_has_help_that_gives_its_default() -> None:
    """Every option of every command says what it does and what it is when not given (a
    flag is off when not given)."""
    from chordcast.cli.main import build_parser

    missing = []
    for path, parser in _parsers(build_parser(), "chordcast"):
        formatter = parser._get_formatter()
        for a in parser._actions:
            if not a.option_strings or isinstance(a, (argparse._HelpAction,
                                                      argparse._VersionAction)):
                continue
            text = formatter._expand_help(a) if a.help else ""
            flag = isinstance(a, argparse._StoreTrueAction)
            if not text or (not flag and "default" not in text):
                missing.append(f"{path} {a.option_strings[0]}: {text!r}")
    assert not missing, "\n".join(missing)


def test_via_and_timeout_before_the_command_combine_with_those_after() -> None:
    from chordcast.cli.main import build_parser

    args = build_parser().parse_args(["--via", "a:1", "--timeout", "3", "ring", "--via", "b:2"])
    assert vias(args) == ["a:1", "b:2"] and args.timeout == 3.0
    args = build_parser().parse_args(["ring", "--timeout", "4"])
    assert args.timeout == 4.0
