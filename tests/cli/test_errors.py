"""Failures read as one clear line, exit with their code (cli/exitcodes.py), and leave the
principal's state as it was."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import Result

from backchannel.cli.context import PASSPHRASE_TRIES, CliContext
from backchannel.cli.exitcodes import ExitCode
from backchannel.client.errors import WrongPassphrase
from backchannel.client.keystore import STATE_FILE
from tests.cli.conftest import PASSPHRASE, Pair, ThreadRelay, one_error_line, run
from tests.cli.test_exit_codes import json_error


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    path = tmp_path / "washington"
    run(path, "init", "--name", "washington")
    return path


def test_wrong_passphrase_is_one_line_and_touches_nothing(home: Path) -> None:
    state = home / STATE_FILE
    before = state.read_bytes()
    result = run(home, "status", passphrase="not the passphrase", code=ExitCode.WRONG_PASSPHRASE)
    assert "wrong passphrase" in one_error_line(result)
    assert state.read_bytes() == before


def test_no_passphrase_and_no_terminal_says_how_to_give_one(home: Path) -> None:
    result = run(home, "status", passphrase=None, code=1)
    assert "BACKCHANNEL_PASSPHRASE" in one_error_line(result)


def _garble_header(state: Path) -> None:
    data = bytearray(state.read_bytes())
    data[:100] = b"\xa5" * 100
    state.write_bytes(bytes(data))


def _flip_a_sealed_record(state: Path) -> None:
    db = sqlite3.connect(state)
    (record,) = db.execute("SELECT record FROM records WHERE kind = 'identity'").fetchone()
    damaged = bytes(record[:20]) + bytes([record[20] ^ 1]) + bytes(record[21:])
    db.execute("UPDATE records SET record = ? WHERE kind = 'identity'", (damaged,))
    db.commit()
    db.close()


@pytest.mark.parametrize("damage", [_garble_header, _flip_a_sealed_record])
def test_a_damaged_state_file_is_reported_and_not_overwritten(home: Path, damage: object) -> None:
    state = home / STATE_FILE
    assert callable(damage)
    damage(state)
    before = state.read_bytes()
    line = one_error_line(run(home, "send", "beijing", "hello", code=1))
    assert "damaged" in line or "not a Backchannel state file" in line
    assert state.read_bytes() == before


def test_no_principal_yet_says_to_run_init(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    line = one_error_line(run(tmp_path / "empty", "channels", code=ExitCode.NOT_FOUND))
    assert "backchannel init" in line


def test_a_home_that_does_not_exist_is_said_before_the_passphrase(tmp_path: Path) -> None:
    # No passphrase anywhere: had it been asked for first, the error would be about it.
    result = run(tmp_path / "nonexistent", "status", passphrase=None, code=ExitCode.NOT_FOUND)
    line = one_error_line(result)
    assert "does not exist" in line and "init --name" in line


def test_init_twice_is_refused(home: Path) -> None:
    line = one_error_line(run(home, "init", "--name", "someone", code=1))
    assert "already holds a principal" in line


def test_unknown_channel_names_the_known_ones(pair: Pair) -> None:
    for command in (["send", "moscow", "hi"], ["read", "moscow"], ["inbox", "moscow"],
                    ["verify", "moscow"], ["status", "moscow"]):
        line = one_error_line(run(pair.washington, *command, code=ExitCode.NOT_FOUND))
        assert "no channel 'moscow'" in line and "beijing" in line, command


def test_invalid_invite_code(home: Path) -> None:
    line = one_error_line(run(home, "accept", "hello-there", code=1))
    assert "not an invite code" in line


def _invite(home: Path, relay: ThreadRelay, *extra: str) -> str:
    return run(home, "invite", "--relay", relay.url, *extra).stdout.strip()


def test_tampered_invite_code(home: Path, relay: ThreadRelay, tmp_path: Path) -> None:
    code = _invite(home, relay)
    middle = len(code) // 2
    tampered = code[:middle] + ("B" if code[middle] == "A" else "A") + code[middle + 1 :]
    joiner = tmp_path / "beijing"
    run(joiner, "init", "--name", "beijing")
    assert "tampered" in one_error_line(run(joiner, "accept", tampered, code=1))


def test_expired_invite(home: Path, relay: ThreadRelay, tmp_path: Path) -> None:
    code = _invite(home, relay, "--ttl", "1s")
    joiner = tmp_path / "beijing"
    run(joiner, "init", "--name", "beijing")  # takes a while: the invite ages meanwhile
    time.sleep(1.1)
    assert "expired" in one_error_line(run(joiner, "accept", code, code=1))


def test_own_invite_is_refused(home: Path, relay: ThreadRelay) -> None:
    assert "your own invite" in one_error_line(run(home, "accept", _invite(home, relay), code=1))


def test_a_used_invite_is_refused(home: Path, relay: ThreadRelay, tmp_path: Path) -> None:
    code = _invite(home, relay)
    joiner, third = tmp_path / "beijing", tmp_path / "moscow"
    run(joiner, "init", "--name", "beijing")
    run(joiner, "accept", "-", input=code + "\n")  # from stdin
    assert "already used" in one_error_line(run(joiner, "accept", code, code=1))

    # A third principal cannot tell the code was spent (only the inviter knows), but the
    # inviter refuses the second joiner: one channel, one rejection, nothing shown.
    run(third, "init", "--name", "moscow")
    run(third, "accept", code)
    report = json.loads(run(home, "sync", "--json").stdout)
    assert report["new_channels"] == ["beijing"] and report["rejected"] == 1
    channels = json.loads(run(home, "channels", "--json").stdout)["channels"]
    assert [c["name"] for c in channels] == ["beijing"]

    # Once the joiner has moved to the channel's own mailboxes, the inviter retires the
    # invite's mailboxes: a fourth principal is told at once that the code is spent.
    run(joiner, "sync")
    run(home, "sync")
    fourth = tmp_path / "paris"
    run(fourth, "init", "--name", "paris")
    assert "already used" in one_error_line(run(fourth, "accept", code, code=1))


@pytest.mark.parametrize("ttl", ["7", "0s", "31d", "soon"])
def test_a_bad_invite_lifetime_is_a_usage_error(tmp_path: Path, ttl: str) -> None:
    result = run(tmp_path, "invite", "--relay", "ws://127.0.0.1:9/", "--ttl", ttl, code=2)
    assert "--ttl" in result.output or "duration" in result.output or "30 days" in result.output


def test_an_unreachable_relay_fails_an_invite_clearly(home: Path) -> None:
    result = run(home, "invite", "--relay", "ws://127.0.0.1:9/",
                 code=ExitCode.RELAY_UNREACHABLE)
    assert "cannot be reached" in one_error_line(result)


def test_invite_shows_and_saves_a_qr_code(home: Path, relay: ThreadRelay, tmp_path: Path) -> None:
    svg = tmp_path / "invite.svg"
    result = run(home, "invite", "--relay", relay.url, "--qr", "--qr-file", str(svg))
    code, *qr = result.stdout.splitlines()
    assert code.startswith("BC1-") and len(qr) > 50  # a large symbol: the code is ~2.2 KB
    assert svg.read_text().lstrip().startswith(("<?xml", "<svg"))
    assert "valid until" in result.stderr
    bad = run(home, "invite", "--relay", relay.url, "--qr-file", "x.gif", code=2)
    assert ".png or .svg" in bad.output


def test_a_new_key_under_a_known_name_blocks_sending_until_confirmed(
    pair: Pair, tmp_path: Path
) -> None:
    impostor = tmp_path / "impostor"
    run(impostor, "init", "--name", "beijing")
    run(impostor, "accept", run(pair.washington, "invite", "--relay", pair.relay.url).stdout)
    (name,) = json.loads(run(pair.washington, "sync", "--json").stdout)["new_channels"]
    assert name != "beijing"  # the first 'beijing' keeps its name

    (status,) = json.loads(run(pair.washington, "status", name, "--json").stdout)["channels"]
    assert status["identity_changed"] is True and status["verified"] is False
    assert "different identity key" in one_error_line(
        run(pair.washington, "send", name, "hello", code=1))
    assert "Warning" in run(pair.washington, "verify", name).stdout
    run(pair.washington, "verify", name, "--confirm")
    assert "Sent to" in run(pair.washington, "send", name, "hello").stdout
    # The original channel was never in doubt.
    assert "Sent to" in run(pair.washington, "send", "beijing", "hello").stdout


def _at_a_prompt(monkeypatch: pytest.MonkeyPatch, answers: list[str]) -> list[str]:
    """Make the passphrase come from a terminal prompt that answers `answers` in turn."""
    asked: list[str] = []

    def prompt(text: str, **_: object) -> str:
        asked.append(text)
        return answers[len(asked) - 1]

    monkeypatch.delenv("BACKCHANNEL_PASSPHRASE", raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("typer.prompt", prompt)
    return asked


def test_a_wrong_passphrase_at_the_prompt_may_be_typed_again(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _at_a_prompt(monkeypatch, ["typo", "another typo", PASSPHRASE])
    with CliContext(home).principal() as principal:
        assert principal.name == "washington"
    assert len(asked) == 3


def test_three_wrong_passphrases_at_the_prompt_end_the_command(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _at_a_prompt(monkeypatch, ["one", "two", "three", PASSPHRASE])
    with pytest.raises(WrongPassphrase), CliContext(home).principal():
        pass
    assert len(asked) == PASSPHRASE_TRIES == 3


# --- a read-only home and a damaged state file (review §4 row 6) ---------------------------


@contextlib.contextmanager
def _unwritable(*paths: Path) -> Iterator[None]:
    """Make files and folders really unwritable for this process: the mode bits for an
    ordinary user; as root, whom the mode bits do not stop, the immutable attribute
    (`chattr +i`, which binds root too). Skips where neither can be had."""
    if os.geteuid() != 0:
        modes = {path: path.stat().st_mode for path in paths}
        for path in paths:
            path.chmod(modes[path] & ~0o222)
        try:
            yield
        finally:
            for path in paths:
                path.chmod(modes[path])
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", *map(str, paths)],
                                        capture_output=True).returncode != 0:
        pytest.skip("running as root, and this file system has no immutable attribute")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", *map(str, paths)], check=True)


def _assert_clean(result: Result) -> None:
    """No traceback: the command ended by its own exit, not by an exception it let out."""
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output


READS = [["status"], ["inbox"], ["channels"], ["history", "beijing"], ["verify", "beijing"],
         ["whoami"], ["record", "show", "beijing"], ["redline", "list"],
         ["codebook", "list", "beijing"]]
WRITES = [["send", "beijing", "hello"], ["sync"], ["read", "beijing"],
          ["verify", "beijing", "--confirm"], ["channels", "remove", "beijing", "--yes"],
          ["invite", "--relay", "ws://127.0.0.1:9/"], ["passphrase", "change"],
          ["watch"], ["agent", "--foreground"], ["codebook", "send", "beijing", "7"]]


def test_a_read_only_home_is_read_and_refuses_every_write(pair: Pair) -> None:
    run(pair.beijing, "send", "washington", "seen from the audit copy")
    run(pair.washington, "sync")
    home, state = pair.washington, pair.washington / STATE_FILE
    files, before = sorted(os.listdir(home)), state.read_bytes()
    with _unwritable(state, home):
        for command in READS:
            result = run(home, *command)
            _assert_clean(result)
            notice = [line for line in result.stderr.splitlines() if "read-only" in line]
            assert len(notice) == 1 and notice[0].startswith("note: the home "), command
        inbox = json.loads(run(home, "inbox", "--json").stdout)["messages"]
        assert [m["text"] for m in inbox] == ["seen from the audit copy"]
        for command in WRITES:
            result = run(home, *command, code=ExitCode.HOME_READ_ONLY)
            _assert_clean(result)
            # `verify --confirm` is a read command until it writes: the notice comes first.
            (line,) = [ln for ln in result.stderr.splitlines() if not ln.startswith("note: ")]
            assert line.startswith("error: ") and f"the home {home} is read-only" in line, line
            assert "nothing changed" in line
        error = json_error(run(home, "--json", "send", "beijing", "x",
                               code=ExitCode.HOME_READ_ONLY))
        assert error["code"] == "home_read_only"
    assert state.read_bytes() == before and sorted(os.listdir(home)) == files


def test_a_read_only_state_file_in_a_writable_folder_is_read_too(pair: Pair) -> None:
    home, state = pair.washington, pair.washington / STATE_FILE
    before = state.read_bytes()
    with _unwritable(state):
        assert "read-only" in run(home, "status").stderr
        assert "state.db is not writable" in one_error_line(
            run(home, "send", "beijing", "hi", code=ExitCode.HOME_READ_ONLY))
    assert state.read_bytes() == before


def _truncate_to(size: int) -> Callable[[Path], None]:
    def truncate(state: Path) -> None:
        state.write_bytes(state.read_bytes()[:size])

    return truncate


def _page_size(state: Path) -> int:
    return int.from_bytes(state.read_bytes()[16:18], "big")


def _flip(offset: Callable[[Path], int]) -> Callable[[Path], None]:
    def flip(state: Path) -> None:
        data = bytearray(state.read_bytes())
        data[offset(state)] ^= 0xFF
        state.write_bytes(bytes(data))

    return flip


def _check_value_offset(state: Path) -> int:
    with contextlib.closing(sqlite3.connect(state)) as db:
        (check,) = db.execute("SELECT value FROM meta WHERE key = 'check'").fetchone()
    return state.read_bytes().index(bytes(check)) + 20


def _records_page_offset(state: Path) -> int:
    with contextlib.closing(sqlite3.connect(state)) as db:
        (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'records'").fetchone()
    return (root - 1) * _page_size(state)  # the page's type byte


DAMAGE = {
    "empty": (_truncate_to(0), "is empty (0 bytes)"),
    "truncated in the header": (_truncate_to(50), "truncated at 50 bytes"),
    "truncated after the header": (_truncate_to(100), "truncated at 100 bytes"),
    "truncated mid-page": (lambda s: _truncate_to(s.stat().st_size - 1)(s), "truncated at"),
    "truncated to one page": (lambda s: _truncate_to(_page_size(s))(s), "truncated at"),
    "half the pages": (lambda s: _truncate_to(s.stat().st_size // 2 // _page_size(s)
                                             * _page_size(s))(s), "its header says"),
    "magic flipped": (_flip(lambda _: 0), "not a Backchannel state file"),
    "page size flipped": (_flip(lambda _: 16), "header is garbled"),
    "check value flipped": (_flip(_check_value_offset), "its passphrase check value"),
    "a table's page flipped": (_flip(_records_page_offset), "damaged"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_a_damaged_state_file_says_what_is_wrong_and_is_left_as_it_is(
    home: Path, case: str
) -> None:
    damage, said = DAMAGE[case]
    state = home / STATE_FILE
    damage(state)
    before = state.read_bytes()
    for command in (["status"], ["send", "beijing", "hello"]):
        result = run(home, *command, code=ExitCode.FAILURE)
        _assert_clean(result)
        line = one_error_line(result)
        assert said in line and "left as it is" in line, (case, line)
        assert state.read_bytes() == before, case
