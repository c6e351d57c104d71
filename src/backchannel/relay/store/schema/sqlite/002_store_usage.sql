-- Relay schema, version 2 (SQLite): the store-wide byte total, so that a deposit checks
-- RelayLimits.store_max_bytes with one row read instead of a sum over every mailbox.
-- Kept in the same transaction as every deposit, ack, delete and sweep that changes it.
CREATE TABLE store_usage (
    id    INTEGER PRIMARY KEY CHECK (id = 1),    -- one row
    bytes INTEGER NOT NULL                       -- envelope bytes stored, all mailboxes
);
INSERT INTO store_usage (id, bytes) SELECT 1, coalesce(sum(bytes), 0) FROM mailboxes;
