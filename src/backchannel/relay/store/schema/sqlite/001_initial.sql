-- Relay schema, version 1 (SQLite). Applied once, in one transaction, by the migrator.
-- A mailbox row holds only hashes of its two capabilities and its fill counters; nothing
-- names a person or links two mailboxes.
CREATE TABLE mailboxes (
    id           BLOB    PRIMARY KEY,        -- 16 random bytes chosen by the client
    send_hash    BLOB    NOT NULL,           -- token_hash(send token)
    receive_hash BLOB    NOT NULL,           -- token_hash(receive token)
    next_seq     INTEGER NOT NULL DEFAULT 1, -- seq the next envelope gets
    count        INTEGER NOT NULL DEFAULT 0, -- envelopes stored (quota)
    bytes        INTEGER NOT NULL DEFAULT 0, -- envelope bytes stored (quota)
    last_active  INTEGER NOT NULL            -- unix seconds of the last authorised use
) WITHOUT ROWID;

CREATE INDEX mailboxes_idle ON mailboxes (last_active) WHERE count = 0;

-- Envelopes keep a rowid table (bodies are 1-64 KiB: out of the key b-tree) with a unique
-- index for in-order reads and acks by (mailbox, seq).
CREATE TABLE envelopes (
    mailbox_id BLOB    NOT NULL,
    seq        INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,             -- unix seconds
    body       BLOB    NOT NULL
);
CREATE UNIQUE INDEX envelopes_by_mailbox ON envelopes (mailbox_id, seq);
CREATE INDEX envelopes_by_expiry ON envelopes (expires_at);
