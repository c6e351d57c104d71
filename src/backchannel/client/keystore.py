"""The principal's local state: one SQLite file, every secret record encrypted.

Why per-record AEAD and not SQLCipher: `sqlcipher3` needs a C build against libsqlcipher,
which is not on every machine, while `cryptography` already gives us Argon2id and
AES-GCM-SIV. What stays in clear is structure only: row ids, sequence numbers, directions,
keyed hashes used as indexes, and the outbox's envelopes (already end-to-end ciphertext).
Names, identities, session states, message bodies and mailbox tokens are sealed.

Key schedule::

    master      = Argon2id(passphrase, salt, parameters stored in the file)
    record key  = HKDF(master, info="Backchannel keystore records v1")
    index key   = HKDF(master, info="Backchannel keystore index v1")

A record is `nonce(12) || AES-256-GCM-SIV(record key, nonce, plaintext, ad = table || key)`,
so a record copied to another row or table no longer opens. A known check value sealed
under the record key tells a wrong passphrase from a damaged file before anything changes.

Changing the passphrase (`change_passphrase`) draws a new salt, derives a new record key
and re-seals every sealed column in one transaction, so the old passphrase opens nothing
in the file afterwards. The index key is kept, sealed under the new record key in `meta`
(`index_key`): the keyed hashes are row keys (message refs, payload digests, ratchet
positions) that cannot be recomputed from what is stored, and they reveal only equality.

A home that cannot be written (a read-only file, folder or file system: a mounted backup,
a locked-down audit copy) is opened read-only (`read_only_reason`): through an SQLite URI
with `mode=ro`, and `immutable=1` when no write-ahead log is waiting, since a WAL-mode
file cannot otherwise be read from a folder where its `-wal` and `-shm` cannot be made.
Every write is then refused with `HomeReadOnly` before it starts. A file that is not a
sound database (empty, truncated, another format, a damaged header) is refused by a look
at its first 100 bytes and its size (`_check_file`) before SQLite touches it.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backchannel.client.errors import HomeReadOnly, StaleRecord, StateCorrupted, WrongPassphrase

__all__ = ["FORMAT_VERSION", "SEAL_NONCE", "SEAL_TAG", "STATE_FILE", "KdfParameters", "Keystore",
           "read_only_reason", "stamp"]

STATE_FILE: Final = "state.db"
FORMAT_VERSION: Final = 1
_CHECK: Final = b"Backchannel keystore check v1"
# meta row holding the index key once the passphrase was changed (see the module doc).
_INDEX_KEY_META: Final = "index_key"
_NONCE: Final = 12
# A sealed record is its nonce, the ciphertext and the tag (`Keystore.seal`).
SEAL_NONCE: Final = _NONCE
SEAL_TAG: Final = 16
# An SQLite file starts with this, in a header of 100 bytes (sqlite.org/fileformat.html §1.3).
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_SQLITE_HEADER: Final = 100

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, key BLOB NOT NULL, record BLOB NOT NULL,
    version INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS messages (
    channel BLOB NOT NULL, ref BLOB NOT NULL, direction INTEGER NOT NULL,
    seq INTEGER NOT NULL, record BLOB NOT NULL, ord INTEGER NOT NULL,
    PRIMARY KEY (channel, ref));
CREATE INDEX IF NOT EXISTS messages_by_seq ON messages (channel, direction, seq);
CREATE INDEX IF NOT EXISTS messages_by_ord ON messages (channel, ord);
CREATE TABLE IF NOT EXISTS processed (
    digest BLOB PRIMARY KEY, seen_ms INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS forks (
    id INTEGER PRIMARY KEY, channel BLOB NOT NULL, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS positions (position BLOB PRIMARY KEY, header BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, channel BLOB NOT NULL, relay TEXT NOT NULL,
    ref BLOB NOT NULL, envelope BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    in_flight_until_ms INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS outbox_by_relay ON outbox (relay, id);
CREATE TABLE IF NOT EXISTS retained (
    channel BLOB NOT NULL, message_id BLOB NOT NULL, payload BLOB NOT NULL,
    until_receipted INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL DEFAULT 0,
    kept_at_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (channel, message_id));
CREATE INDEX IF NOT EXISTS retained_by_keep ON retained (channel, until_receipted, seq);
CREATE TABLE IF NOT EXISTS pending_receipts (
    channel BLOB NOT NULL, kind INTEGER NOT NULL, message_id BLOB NOT NULL,
    PRIMARY KEY (channel, kind, message_id));
"""


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _needs_migration(db: sqlite3.Connection) -> bool:
    """Whether `_migrate` has anything to do (it reads only)."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "records" not in tables:
        return False  # a new file: the schema comes next
    return (
        "version" not in _columns(db, "records")
        or not {"forks", "positions"} <= tables
        or ("processed" in tables and "seen_ms" not in _columns(db, "processed"))
        or ("outbox" in tables and "in_flight_until_ms" not in _columns(db, "outbox"))
        or ("retained" in tables and "until_receipted" not in _columns(db, "retained"))
    )


def _add_indexes(db: sqlite3.Connection) -> None:
    """Add the indexes a file made before them lacks. Not a migration: a read-only home
    reads the file as well without them, only slower.

    `retained_by_keep`: each delivered receipt forgets what owes none below its seq;
    without it that scanned every payload the channel keeps (a burst keeps thousands).
    """
    names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    if "retained" in names and "retained_by_keep" not in names:
        db.execute("CREATE INDEX IF NOT EXISTS retained_by_keep"
                   " ON retained (channel, until_receipted, seq)")


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an older state file up to this schema (idempotent, in one transaction).

    0.1 files lack the records' versions and the fork tables; later ones may lack the
    payload digests' first-seen time (`processed.seen_ms`, for expiring them), the
    outbox's send claims (`outbox.in_flight_until_ms`) and which retained payloads go at
    a delivered receipt (`retained.until_receipted`; those already kept were all kept for
    an escalation, so 0).
    """
    if not _needs_migration(db):
        return
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    missing_version = "version" not in _columns(db, "records")
    missing_seen = "processed" in tables and "seen_ms" not in _columns(db, "processed")
    missing_claim = "outbox" in tables and "in_flight_until_ms" not in _columns(db, "outbox")
    missing_until = "retained" in tables and "until_receipted" not in _columns(db, "retained")
    db.execute("BEGIN IMMEDIATE")
    try:
        if missing_version and "version" not in _columns(db, "records"):
            db.execute("ALTER TABLE records ADD COLUMN version INTEGER NOT NULL DEFAULT 0")
            # Existing records start at version 1 so that `put_versioned(..., 0)` (create)
            # refuses to overwrite them.
            db.execute("UPDATE records SET version = 1")
        db.execute(
            "CREATE TABLE IF NOT EXISTS forks ("
            " id INTEGER PRIMARY KEY, channel BLOB NOT NULL, record BLOB NOT NULL)"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS positions"
            " (position BLOB PRIMARY KEY, header BLOB NOT NULL)"
        )
        if missing_seen and "seen_ms" not in _columns(db, "processed"):
            # Digests kept without a time count from now: they expire a full keep later.
            db.execute("ALTER TABLE processed ADD COLUMN seen_ms INTEGER NOT NULL DEFAULT 0")
            db.execute("UPDATE processed SET seen_ms = ?", (time.time_ns() // 1_000_000,))
        if missing_claim and "in_flight_until_ms" not in _columns(db, "outbox"):
            db.execute(
                "ALTER TABLE outbox ADD COLUMN in_flight_until_ms INTEGER NOT NULL DEFAULT 0"
            )
        if missing_until:
            for column in ("until_receipted", "seq", "kept_at_ms"):
                if column not in _columns(db, "retained"):
                    db.execute(
                        f"ALTER TABLE retained ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@dataclass(frozen=True, slots=True)
class KdfParameters:
    """Argon2id cost. The default follows OWASP's 2024 guidance (>= 19 MiB, t >= 2) with a
    wide margin: 64 MiB, 3 passes, 4 lanes, about 0.2 s here. Stored in the file, so a
    principal can raise it and an old file keeps opening."""

    memory_kib: int = 64 * 1024
    iterations: int = 3
    lanes: int = 4

    def to_json(self) -> bytes:
        return json.dumps(
            {"m": self.memory_kib, "t": self.iterations, "p": self.lanes}, sort_keys=True
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> KdfParameters:
        try:
            data = json.loads(raw)
            return cls(int(data["m"]), int(data["t"]), int(data["p"]))
        except (ValueError, KeyError, TypeError):
            raise StateCorrupted("the state file's key parameters are damaged") from None


def read_only_reason(home: Path) -> str:
    """Why the home cannot be written by this process ("" when it can).

    Asked of the kernel (`access`), so a read-only mount, an immutable file and another
    owner's file all count, and root's override of the mode bits is honoured. The folder
    counts too: in WAL mode SQLite must create `state.db-wal` and `-shm` beside the file,
    and the home lock lives there.
    """
    path = home / STATE_FILE
    with contextlib.suppress(OSError, AttributeError):
        if os.statvfs(home).f_flag & os.ST_RDONLY:
            return "it is on a read-only file system"
    if not os.access(path, os.W_OK):
        return f"{STATE_FILE} is not writable"
    if not os.access(home, os.W_OK):
        return "its folder is not writable"
    return ""


def _has_wal(path: Path) -> bool:
    """A non-empty write-ahead log beside the file: commits not yet copied into it."""
    try:
        return path.with_name(path.name + "-wal").stat().st_size > 0
    except OSError:
        return False


def _uri(path: Path, read_only: bool) -> str:
    """The SQLite URI of an existing file (percent-encoded: a home may have `?` or `#`)."""
    if not read_only:
        return path.absolute().as_uri() + "?mode=rw"
    return path.absolute().as_uri() + ("?mode=ro" if _has_wal(path) else "?mode=ro&immutable=1")


def _check_file(path: Path) -> None:
    """Refuse a file that cannot be a sound state file, saying what is wrong, from its size
    and its 100-byte SQLite header alone (nothing is written; SQLite is not involved).

    Raises:
        StateCorrupted: empty, truncated, not an SQLite file, or its header is damaged.
        OSError: the file cannot be read (permission denied, ...).
    """
    size = path.stat().st_size
    with path.open("rb") as file:
        header = file.read(_SQLITE_HEADER)
    if size == 0:
        raise StateCorrupted(f"{path} is empty (0 bytes): truncated, or not a state file")
    if size < _SQLITE_HEADER:
        raise StateCorrupted(
            f"{path} is truncated at {size} bytes (shorter than a database header)"
        )
    if header[:16] != _SQLITE_MAGIC:
        raise StateCorrupted(
            f"{path} is not a Backchannel state file (not an SQLite database), or its"
            " header is damaged"
        )
    raw = int.from_bytes(header[16:18], "big")
    page = 65536 if raw == 1 else raw  # 1 stands for 65536 (fileformat §1.3.2)
    if page < 512 or page & (page - 1) or header[18] not in (1, 2) or header[19] not in (1, 2):
        raise StateCorrupted(f"{path} is damaged: its database header is garbled")
    if size % page:
        raise StateCorrupted(
            f"{path} is truncated at {size} bytes (not a whole number of {page}-byte pages)"
        )
    # The page count in the header holds when its change counter matches the
    # version-valid-for number (§1.3.7). A waiting write-ahead log may hold the pages
    # beyond the end (a checkpoint cut short): then SQLite is the judge.
    pages = int.from_bytes(header[28:32], "big")
    if header[24:28] == header[92:96] and size < pages * page and not _has_wal(path):
        raise StateCorrupted(
            f"{path} is truncated at {size} bytes (its header says {pages * page} bytes)"
        )


def _derive(passphrase: str, salt: bytes, params: KdfParameters) -> tuple[bytes, bytes]:
    master = Argon2id(
        salt=salt,
        length=32,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    ).derive(passphrase.encode("utf-8"))
    keys = []
    for info in (b"Backchannel keystore records v1", b"Backchannel keystore index v1"):
        keys.append(HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(master))
    return keys[0], keys[1]


def stamp(sealed: bytes) -> bytes:
    """What tells one sealed version of a record from any other: its nonce and its tag.

    Every write seals with a fresh random nonce and the tag authenticates the whole
    record, so the same stamp is the same sealed bytes (a cache keyed by it never holds
    a record the store no longer has).
    """
    return sealed[:SEAL_NONCE] + sealed[-SEAL_TAG:]


class Keystore:
    """An open, unlocked state file. Use `create` or `open`; close when done."""

    def __init__(
        self,
        path: Path,
        db: sqlite3.Connection,
        record_key: bytes,
        index_key: bytes,
        read_only: str = "",
    ):
        self.path = path
        # Why the file is opened read-only ("": it is writable); see `read_only_reason`.
        self.read_only = read_only
        self._db = db
        self._record_key = record_key
        self._aead = AESGCMSIV(record_key)
        self._index_key = index_key
        # What `all_sealed` last read of each kind, outside a transaction, with the
        # `_listing_token` it was read at (see there).
        self._listings: dict[str, tuple[tuple[int, int], tuple[tuple[bytes, bytes, int], ...]]] = {}
        # Moves on with every write of this handle outside a transaction and at the end
        # of each of its transactions, committed or rolled back.
        self._generation = 0
        # Inside a transaction: the records written by `put_sealed_versioned` and `delete`,
        # by kind and key (None: deleted), so that a commit brings the listings kept up to
        # date instead of reading them again; and the kinds written otherwise (`put`).
        self._written: dict[str, dict[bytes, tuple[bytes, int] | None]] = {}
        self._unjournaled: set[str] = set()
        # Inside a transaction: what `all_sealed` read of each kind in it, until this handle
        # writes a record of that kind. A transaction holds the write lock from its BEGIN
        # IMMEDIATE, so nobody else can change a record meanwhile.
        self._read_in_transaction: dict[str, tuple[tuple[bytes, bytes, int], ...]] = {}

    def __repr__(self) -> str:
        return f"Keystore({str(self.path)!r})"

    # -- opening ----------------------------------------------------------------------

    @staticmethod
    def _connect(path: Path, read_only: str = "", *, migrate: bool = True) -> sqlite3.Connection:
        if read_only:
            return Keystore._connect_read_only(path)
        # check_same_thread off: the agent hands a connection of its own to the worker
        # thread of each local request; a connection is still used by one thread at a time.
        db = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
        # WAL + synchronous=FULL: a committed transaction survives a power cut, and readers
        # (another command of the same principal) never block the writer.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        if migrate:
            _migrate(db)
            _add_indexes(db)
        return db

    @staticmethod
    def _connect_read_only(path: Path) -> sqlite3.Connection:
        """A connection that cannot write and creates nothing beside the file.

        `immutable=1` reads the file alone, with no `-wal`, `-shm` or locks: the only way
        to read a WAL-mode file in a folder where those cannot be made. It must not be used
        while a non-empty log waits, whose commits it would not see; then `mode=ro` reads
        the log through the existing `-shm` (SQLite 3.22 and later).
        """
        db = sqlite3.connect(_uri(path, True), uri=True, isolation_level=None,
                             check_same_thread=False)
        db.execute("PRAGMA query_only=ON")  # a write that slips past `transaction` fails too
        if _needs_migration(db):
            db.close()
            raise HomeReadOnly(
                path.parent,
                "its state file was written by an older version and must be upgraded once",
                "upgrading it changes it",
            )
        return db

    def clone(self) -> Keystore:
        """A second connection to the same unlocked file (no passphrase, no Argon2id): for
        the agent's request workers. Both see the same transactions and versions."""
        return Keystore(
            self.path,
            # Not migrated again: this handle's own opening did, and it holds the file.
            self._connect(self.path, self.read_only, migrate=False),
            self._record_key,
            self._index_key,
            self.read_only,
        )

    @classmethod
    def create(cls, home: Path, passphrase: str, params: KdfParameters | None = None) -> Keystore:
        """Create a new state file (mode 0600) in `home`.

        Raises:
            FileExistsError: a state file is already there; it is not touched.
        """
        params = params or KdfParameters()
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = home / STATE_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        salt = os.urandom(16)
        record_key, index_key = _derive(passphrase, salt, params)
        db = cls._connect(path)
        store = cls(path, db, record_key, index_key)
        with store.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            meta = {
                "format": str(FORMAT_VERSION).encode(),
                "kdf_salt": salt,
                "kdf_params": params.to_json(),
                "check": store.seal("meta", b"check", _CHECK),
            }
            db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        return store

    @classmethod
    def open(cls, home: Path, passphrase: str, *, read_only: bool | None = None) -> Keystore:
        """Open and unlock an existing state file.

        Args:
            read_only: open it read-only (True), read-write (False), or read-only when
                the home cannot be written (None: `read_only_reason`).

        Raises:
            FileNotFoundError: no state file in `home`.
            WrongPassphrase: the passphrase does not unlock it (nothing was changed).
            StateCorrupted: the file is not a Backchannel state file or is damaged.
            HomeReadOnly: read-only, and too old to be read without an upgrade.
            OSError: the file cannot be read at all (permission denied).
        """
        path = home / STATE_FILE
        if not path.exists():
            raise FileNotFoundError(path)
        _check_file(path)
        reason = read_only_reason(home) if read_only is None else ""
        if read_only and not reason:
            reason = "it was opened read-only"
        try:
            db = sqlite3.connect(_uri(path, bool(reason)), uri=True, isolation_level=None)
            rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as error:
            raise StateCorrupted(
                f"{path} is damaged or not a Backchannel state file ({error})"
            ) from None
        try:
            if int(rows["format"]) != FORMAT_VERSION:
                db.close()
                raise StateCorrupted(f"{path} has an unknown format version")
            salt, params, check = rows["kdf_salt"], rows["kdf_params"], rows["check"]
        except (KeyError, ValueError):
            db.close()
            raise StateCorrupted(f"{path} is damaged: its header is incomplete") from None
        record_key, index_key = _derive(passphrase, bytes(salt), KdfParameters.from_json(params))
        store = cls(path, db, record_key, index_key, reason)
        try:
            ok = store.unseal("meta", b"check", bytes(check)) == _CHECK
        except StateCorrupted:
            ok = False
        if not ok:
            damaged = store._key_opens_a_record()
            db.close()
            if damaged:
                raise StateCorrupted(
                    f"{path} is damaged: its passphrase check value does not open, though"
                    " the passphrase opens its records"
                )
            raise WrongPassphrase()
        if _INDEX_KEY_META in rows:
            # The passphrase was changed: the index key is the first one, kept sealed.
            store._index_key = store.unseal(
                "meta", _INDEX_KEY_META.encode(), bytes(rows[_INDEX_KEY_META])
            )
        db.close()
        store._db = cls._connect(path, reason)
        return store

    def _key_opens_a_record(self) -> bool:
        """Whether this key opens any stored record: asked only when the check value did
        not open, to tell its damage (the key opens the rest) from a wrong passphrase."""
        for kind, key, sealed in self._db.execute(
            "SELECT kind, key, record FROM records LIMIT 8"
        ).fetchall():
            with contextlib.suppress(StateCorrupted):
                self.unseal(kind, bytes(key), bytes(sealed))
                return True
        return False

    def close(self) -> None:
        self._db.close()

    def change_passphrase(self, new_passphrase: str, params: KdfParameters | None = None) -> None:
        """Re-encrypt the whole file under `new_passphrase`, in one transaction.

        A new salt and a new record key; every sealed record, message and fork is opened
        with the old key and sealed again with the new one, the check value and the kept
        index key too. Either all of it commits or nothing changes. Only this connection
        learns the new key: other open handles (`clone`) must be closed first.

        Args:
            new_passphrase: the passphrase from now on (its strength is the caller's
                business: `passphrase.check_passphrase`).
            params: new Argon2id cost; by default the file's current one.

        Raises:
            StateCorrupted: a stored record does not open; nothing was changed.
        """
        # secure_delete: SQLite overwrites the freed cells that held the old ciphertexts
        # instead of leaving them in free pages, where the old passphrase would open them.
        self._db.execute("PRAGMA secure_delete=ON")
        try:
            with self.transaction() as db:
                # The parameters are read inside the transaction that rewrites them.
                rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
                params = params or KdfParameters.from_json(bytes(rows["kdf_params"]))
                salt = os.urandom(16)
                record_key, _ = _derive(new_passphrase, salt, params)
                new = Keystore(self.path, db, record_key, self._index_key)
                self._reseal_all(db, new)
                self._unjournaled.update(self._listings)  # every record was sealed anew
                self._read_in_transaction.clear()
                meta = {
                    "kdf_salt": salt,
                    "kdf_params": params.to_json(),
                    "check": new.seal("meta", b"check", _CHECK),
                    _INDEX_KEY_META: new.seal("meta", _INDEX_KEY_META.encode(), self._index_key),
                }
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
            self._record_key = record_key
            self._aead = AESGCMSIV(record_key)
            # The old pages also live in the write-ahead log until a checkpoint: copy the new
            # ones into the file and empty the log, then rebuild the file without free pages.
            # (What the file system or the disk keeps of overwritten blocks is out of reach.)
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._db.execute("PRAGMA secure_delete=OFF")

    def _reseal_all(self, db: sqlite3.Connection, new: Keystore) -> None:
        """Open every sealed column with this key and seal it again with `new`'s (inside
        the caller's transaction; each row keeps its associated data)."""
        for kind, key, sealed in db.execute(
            "SELECT kind, key, record FROM records"
        ).fetchall():
            plain = self.unseal(kind, bytes(key), bytes(sealed))
            db.execute(
                "UPDATE records SET record = ? WHERE kind = ? AND key = ?",
                (new.seal(kind, bytes(key), plain), kind, key),
            )
        for channel, ref, sealed in db.execute(
            "SELECT channel, ref, record FROM messages"
        ).fetchall():
            ad = bytes(channel) + bytes(ref)
            plain = self.unseal("messages", ad, bytes(sealed))
            db.execute(
                "UPDATE messages SET record = ? WHERE channel = ? AND ref = ?",
                (new.seal("messages", ad, plain), channel, ref),
            )
        for row_id, channel, sealed in db.execute(
            "SELECT id, channel, record FROM forks"
        ).fetchall():
            ad = bytes(channel) + int(row_id).to_bytes(8, "big")
            plain = self.unseal("forks", ad, bytes(sealed))
            db.execute(
                "UPDATE forks SET record = ? WHERE id = ?",
                (new.seal("forks", ad, plain), row_id),
            )

    # -- records ----------------------------------------------------------------------

    def seal(self, table: str, key: bytes, plaintext: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext, table.encode() + b"\x00" + key)

    def unseal(self, table: str, key: bytes, sealed: bytes) -> bytes:
        """Raises StateCorrupted: the record does not authenticate where it is stored."""
        try:
            return self._aead.decrypt(
                sealed[:_NONCE], sealed[_NONCE:], table.encode() + b"\x00" + key
            )
        except (InvalidTag, ValueError):
            raise StateCorrupted(f"a stored {table} record is damaged") from None

    def index(self, *parts: bytes) -> bytes:
        """A keyed hash for lookups that must not reveal what they index."""
        return hmac.digest(self._index_key, b"\x00".join(parts), "sha256")[:16]

    @property
    def db(self) -> sqlite3.Connection:
        return self._db

    @contextlib.contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One atomic, durable unit of work: all of it is committed, or none.

        Args:
            durable: False for a unit whose loss in a power cut harms nothing, such as a
                send's claim on outbox rows (a lost claim only lets the row be offered
                again, which the receiver's digests make harmless). It is committed
                without its own fsync (`synchronous=NORMAL` in WAL mode: still atomic,
                and made durable by the next durable commit, which syncs the log up to
                it). A send pays one fsync fewer.

        Raises:
            HomeReadOnly: the file was opened read-only; nothing was started.
        """
        if self.read_only:
            raise HomeReadOnly(self.path.parent, self.read_only)
        if not durable:
            self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._written, self._unjournaled = {}, set()
            self._read_in_transaction = {}
            # Read under the write lock: nobody else commits until this transaction ends.
            # Only when there is a listing to carry (most transactions have none).
            before = self._listing_version() if self._listings else -1
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._carry_listings(before)
        finally:
            self._generation += 1  # what it wrote, or undid, is what a listing reads now
            self._written, self._unjournaled = {}, set()
            self._read_in_transaction = {}
            if not durable:
                self._db.execute("PRAGMA synchronous=FULL")

    def get(self, kind: str, key: bytes) -> bytes | None:
        row = self._db.execute(
            "SELECT record FROM records WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
        return None if row is None else self.unseal(kind, key, bytes(row[0]))

    def put(self, kind: str, key: bytes, plaintext: bytes) -> None:
        # Every write moves the version on, so a versioned writer that read before this
        # one is refused (see `put_versioned`).
        # The version it gets is not known here: a listing of the kind is read again.
        if self._db.in_transaction:
            self._unjournaled.add(kind)
            self._read_in_transaction.pop(kind, None)
        else:
            self._generation += 1
        self._db.execute(
            "INSERT INTO records (kind, key, record, version) VALUES (?, ?, ?, 1)"
            " ON CONFLICT (kind, key) DO UPDATE"
            " SET record = excluded.record, version = records.version + 1",
            (kind, key, self.seal(kind, key, plaintext)),
        )

    def get_versioned(self, kind: str, key: bytes) -> tuple[bytes, int] | None:
        """A record and the version it was stored at (for `put_versioned`)."""
        row = self._db.execute(
            "SELECT record, version FROM records WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
        return None if row is None else (self.unseal(kind, key, bytes(row[0])), int(row[1]))

    def all_versioned(self, kind: str) -> list[tuple[bytes, bytes, int]]:
        rows = self._db.execute(
            "SELECT key, record, version FROM records WHERE kind = ? ORDER BY rowid", (kind,)
        ).fetchall()
        return [(bytes(k), self.unseal(kind, bytes(k), bytes(r)), int(v)) for k, r, v in rows]

    def all_sealed(self, kind: str) -> tuple[tuple[bytes, bytes, int], ...]:
        """Every record of a kind as stored, still sealed, with its version, in the order
        they were written: for a caller that keeps what it opened (`ChannelRepository`),
        opening only what it has not seen (`unseal`).

        Outside a transaction, the same tuple as the last call while nothing was written
        since, by this handle or any other connection (`_listing_token`): a caller may
        keep what it derived from it by its identity.

        Inside a transaction, the same tuple as the last call in it while this handle
        wrote no record of the kind (per arrival of a batch of envelopes, say), else read
        anew: what it wrote and has not committed shows."""
        token = self._listing_token()
        if token is not None:
            kept = self._listings.get(kind)
            if kept is not None and kept[0] == token:
                return kept[1]
        else:
            read = self._read_in_transaction.get(kind)
            if read is not None:
                return read
        rows = tuple((bytes(k), bytes(r), int(v)) for k, r, v in self._db.execute(
            "SELECT key, record, version FROM records WHERE kind = ? ORDER BY rowid", (kind,)
        ).fetchall())
        if token is not None:
            self._listings[kind] = (token, rows)
        else:
            self._read_in_transaction[kind] = rows
        return rows

    def _listing_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _carry_listings(self, before: int) -> None:
        """After a commit: the listings that were current when the transaction began,
        with what it wrote applied, are current after it (the token it ends with); the
        others are dropped. `data_version` is unchanged by this handle's own commits."""
        if not self._listings:
            return
        start, end = (before, self._generation), (before, self._generation + 1)
        carried = {}
        for kind, (token, rows) in self._listings.items():
            if token != start or kind in self._unjournaled:
                continue
            written = self._written.get(kind)
            if written:
                kept: list[tuple[bytes, bytes, int]] = []
                for key, sealed, version in rows:
                    if key not in written:
                        kept.append((key, sealed, version))
                    elif (now := written[key]) is not None:  # written over, in its place
                        kept.append((key, *now))
                present = {key for key, _, _ in rows}
                # New records come last, as their rowids do.
                kept += [(key, *now) for key, now in written.items()
                         if now is not None and key not in present]
                rows = tuple(kept)
            carried[kind] = (end, rows)
        self._listings = carried

    def _listing_token(self) -> tuple[int, int] | None:
        """What tells whether the file may have changed since a listing was read: SQLite's
        `data_version` (it moves on when another connection, of this process or another,
        commits) and this handle's `_generation` (its own writes, which `data_version`
        does not count). None inside a transaction, where this handle's own writes not
        yet committed are seen, and may be rolled back: a listing is then read anew."""
        if self._db.in_transaction:
            return None
        row = self._db.execute("PRAGMA data_version").fetchone()
        return (int(row[0]), self._generation)

    def _note_write(self, kind: str, key: bytes, written: tuple[bytes, int] | None) -> None:
        if self._db.in_transaction:
            self._read_in_transaction.pop(kind, None)
            journal = self._written.setdefault(kind, {})
            if key in journal and journal[key] is None and written is not None:
                self._unjournaled.add(kind)  # written again after its deletion: a new rowid
            journal[key] = written
        else:
            self._generation += 1

    def get_sealed(self, kind: str, key: bytes) -> tuple[bytes, int] | None:
        """One record as stored, still sealed, with its version (see `all_sealed`)."""
        row = self._db.execute(
            "SELECT record, version FROM records WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
        return None if row is None else (bytes(row[0]), int(row[1]))

    def put_versioned(self, kind: str, key: bytes, plaintext: bytes, expected: int) -> int:
        """Write a record only if it is still at version `expected` (compare-and-swap).

        `expected` is 0 for a record that must not exist yet. Must run inside a
        transaction that also read the record, so that nothing can slip in between.

        Returns:
            The new version.

        Raises:
            StaleRecord: the stored record is at another version (or exists, or is gone):
                the caller read it before someone else wrote it. Nothing is written.
        """
        return self.put_sealed_versioned(kind, key, self.seal(kind, key, plaintext), expected)

    def put_sealed_versioned(self, kind: str, key: bytes, sealed: bytes, expected: int,
                             *, to: int | None = None) -> int:
        """`put_versioned` of a record the caller sealed (`seal(kind, key, ...)`), for a
        caller that keeps what it wrote by its sealed bytes (`ChannelRepository`).

        Args:
            to: the version to store (default `expected` + 1): for a caller that wrote
                the record several times in one transaction and writes only the last
                (`ChannelRepository.saved_once`), so that its versions are those the
                writes one by one would have left.
        """
        if not self._db.in_transaction:
            raise StaleRecord(f"a {kind} record may only be written inside a transaction")
        version = expected + 1 if to is None else to
        if version <= expected:
            raise ValueError("a record's version only moves on")
        if expected == 0:
            cursor = self._db.execute(
                "INSERT INTO records (kind, key, record, version) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (kind, key) DO NOTHING",
                (kind, key, sealed, version),
            )
        else:
            cursor = self._db.execute(
                "UPDATE records SET record = ?, version = ?"
                " WHERE kind = ? AND key = ? AND version = ?",
                (sealed, version, kind, key, expected),
            )
        if cursor.rowcount != 1:
            raise StaleRecord(
                f"a {kind} record changed since it was read (expected version {expected}):"
                " refused, so that no state is forked"
            )
        self._note_write(kind, key, (sealed, version))
        return version

    def version_of(self, kind: str, key: bytes) -> int:
        """The version a record is stored at now (0: there is none)."""
        row = self._db.execute(
            "SELECT version FROM records WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def delete(self, kind: str, key: bytes) -> None:
        self._note_write(kind, key, None)
        self._db.execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))

    def all(self, kind: str) -> list[tuple[bytes, bytes]]:
        rows = self._db.execute(
            "SELECT key, record FROM records WHERE kind = ? ORDER BY rowid", (kind,)
        ).fetchall()
        return [(bytes(k), self.unseal(kind, bytes(k), bytes(r))) for k, r in rows]
