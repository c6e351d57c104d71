"""`backchannel relay key`: the operator reads the forwarding key's id and fingerprint
without starting the relay, and a missing or foreign key file is a clear error."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from backchannel.cli.main import app
from backchannel.relay.relaykey import load_or_create_key


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["relay", "key", *args])
    return result.exit_code, result.stdout, result.stderr


def test_the_key_beside_the_database_is_shown_as_serve_publishes_it(tmp_path: Path) -> None:
    pair = load_or_create_key(tmp_path / "relay.key")  # where `serve --db` keeps it
    code, out, _ = _run("--db", f"sqlite:///{tmp_path / 'relay.db'}", "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["key_id"] == pair.public.key_id.hex()
    assert shown["fingerprint"] == pair.public.fingerprint
    code, out, _ = _run("--key-file", str(tmp_path / "relay.key"))
    assert code == 0 and pair.public.fingerprint in out


def test_a_missing_key_is_an_error_and_nothing_is_made(tmp_path: Path) -> None:
    code, _, err = _run("--key-file", str(tmp_path / "none.key"))
    assert code == 1 and "no relay key at" in err and "first start" in err
    assert not (tmp_path / "none.key").exists()


def test_a_file_that_is_not_a_key_is_refused_with_its_name_escaped(tmp_path: Path) -> None:
    path = tmp_path / "bad\x1b[31m.key"
    path.write_bytes(b"short")
    code, _, err = _run("--key-file", str(path))
    assert code == 1 and "is not a relay key" in err
    assert "\x1b" not in err
