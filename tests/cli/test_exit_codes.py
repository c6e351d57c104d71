"""Exit codes (cli/exitcodes.py, the table in docs/cli.md), JSON errors, and the command
line's small promises: `-` reads stdin, a too-long deadline is a usage error, piped
output is neither wrapped nor padded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import Result

from backchannel.cli.context import exit_code_of, reports_errors
from backchannel.cli.exitcodes import ExitCode
from tests.cli.conftest import Pair, ThreadRelay, one_error_line, run


def json_error(result: Result) -> dict[str, object]:
    """The one JSON error object a failed `--json` command printed on stderr."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    error = json.loads(lines[0])["error"]
    assert isinstance(error, dict) and set(error) == {"code", "exit", "message"}
    assert error["exit"] == result.exit_code and error["code"] == ExitCode(result.exit_code).word
    return error


def test_codes_are_distinct_and_named() -> None:
    assert len({int(code) for code in ExitCode}) == len(ExitCode)
    assert ExitCode.USAGE == 2 and ExitCode.INTERRUPTED == 130
    assert ExitCode.RELAY_UNREACHABLE.word == "relay_unreachable"


@pytest.mark.parametrize("where", ["before", "after"])
def test_json_errors_before_or_after_the_command(tmp_path: Path, where: str) -> None:
    home = tmp_path / "nowhere"
    argv = ["--json", "status"] if where == "before" else ["status", "--json"]
    result = run(home, *argv, code=ExitCode.NOT_FOUND)
    assert result.stdout == ""
    error = json_error(result)
    assert error["code"] == "not_found" and "does not exist" in str(error["message"])


def test_a_usage_error_under_json_is_a_json_object(tmp_path: Path) -> None:
    result = run(tmp_path, "--json", "send", "beijing", "hi", "--ack-within", "soon",
                 code=ExitCode.USAGE)
    assert "--ack-within" in str(json_error(result)["message"])
    plain = run(tmp_path, "send", "beijing", "hi", "--ack-within", "soon", code=ExitCode.USAGE)
    assert "Usage:" in plain.stderr  # without --json, Click's own report


def test_a_deadline_past_the_limit_is_a_usage_error_in_words(pair: Pair) -> None:
    result = run(pair.washington, "send", "beijing", "hi", "--ack-within", "400d",
                 code=ExitCode.USAGE)
    assert "at most 30d" in result.stderr and "34560000000" not in result.stderr


def test_wrong_passphrase_under_json(pair: Pair) -> None:
    result = run(pair.washington, "--json", "channels", passphrase="wrong",
                 code=ExitCode.WRONG_PASSPHRASE)
    assert json_error(result)["code"] == "wrong_passphrase"


def test_unknown_message_id_is_not_found(pair: Pair) -> None:
    line = one_error_line(run(pair.washington, "ack", "beijing", "abcdef12",
                              code=ExitCode.NOT_FOUND))
    assert "abcdef12" in line


def test_send_and_sync_with_the_relay_down_do_not_exit_0(pair: Pair) -> None:
    pair.relay.stop()
    sent = run(pair.washington, "send", "beijing", "while the relay is down",
               code=ExitCode.NOT_DELIVERED)
    assert "Queued" in sent.stdout  # kept: nothing is lost
    queued = run(pair.washington, "--json", "send", "beijing", "again",
                 code=ExitCode.NOT_DELIVERED)
    assert json.loads(queued.stdout)["queued"] is True
    assert json_error(queued)["code"] == "not_delivered"
    synced = run(pair.washington, "sync", code=ExitCode.NOT_DELIVERED)
    assert "unreachable" in synced.stderr
    pair.relay.start()
    report = json.loads(run(pair.washington, "sync", "--json").stdout)
    assert report["sent"] >= 2 and report["relays_down"] == {}


def test_accept_with_the_relays_down_is_relay_unreachable(
    tmp_path: Path, relay: ThreadRelay
) -> None:
    w, b = tmp_path / "washington", tmp_path / "beijing"
    run(w, "init", "--name", "washington")
    run(b, "init", "--name", "beijing")
    code = run(w, "invite", "--relay", relay.url).stdout.strip()
    relay.stop()
    result = run(b, "--json", "accept", code, code=ExitCode.RELAY_UNREACHABLE)
    assert json_error(result)["code"] == "relay_unreachable"


def test_send_reads_the_text_from_stdin(pair: Pair) -> None:
    run(pair.washington, "send", "beijing", "-", input="Read from stdin.\n")
    run(pair.beijing, "sync")
    (message,) = json.loads(run(pair.beijing, "inbox", "--json").stdout)["messages"]
    assert message["text"] == "Read from stdin."


def test_piped_output_is_not_wrapped_or_padded(pair: Pair) -> None:
    text = "A long note " + "that goes on " * 12 + "and ends here."
    run(pair.washington, "send", "beijing", text)
    run(pair.beijing, "sync")
    out = run(pair.beijing, "inbox").stdout  # CliRunner's stdout is not a terminal
    assert all(line == line.rstrip() for line in out.splitlines())
    assert text in out  # on one line, not cut at 80 (or COLUMNS) columns


def test_meet_suggest_honours_the_root_json() -> None:
    result = run(None, "--json", "meet", "suggest", "--between", "Washington",
                 "--between", "Beijing", "--top", "1")
    assert len(json.loads(result.stdout)["venues"]) == 1


def test_a_sync_that_sees_a_fork_exits_7(pair: Pair, tmp_path: Path) -> None:
    # A copied home (a restore, a second laptop) that sends beside the original.
    run(pair.washington, "send", "beijing", "before the copy")
    run(pair.beijing, "sync")
    copy = tmp_path / "washington-copy"
    shutil.copytree(pair.washington, copy)
    run(pair.washington, "send", "beijing", "the original's note")
    run(copy, "send", "beijing", "the copy's own note")
    result = run(pair.beijing, "--json", "sync", code=ExitCode.FORK_DETECTED)
    assert json.loads(result.stdout)["forks"] == 1  # the report is printed all the same
    assert json_error(result)["code"] == "fork_detected"


def test_ctrl_c_in_a_command_is_interrupted() -> None:
    def stopped() -> None:
        raise KeyboardInterrupt

    wrapped = reports_errors(stopped)
    with pytest.raises(typer.Exit) as ended:
        wrapped()
    assert ended.value.exit_code == ExitCode.INTERRUPTED == exit_code_of(KeyboardInterrupt())
