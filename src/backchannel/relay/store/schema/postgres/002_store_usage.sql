-- Relay schema, version 2 (PostgreSQL): the store-wide byte total, so that a deposit checks
-- RelayLimits.store_max_bytes with one row read instead of a sum over every mailbox.
-- Writers add their batch's change at the end of the batch (a short row lock held only
-- until commit); the sweep subtracts what it removes.
CREATE TABLE store_usage (
    id    integer PRIMARY KEY CHECK (id = 1),    -- one row
    bytes bigint  NOT NULL                       -- envelope bytes stored, all mailboxes
);
INSERT INTO store_usage (id, bytes) SELECT 1, coalesce(sum(bytes), 0) FROM mailboxes;

-- The batch functions of version 1 are gone: the writer applies the rules of
-- backchannel.relay.mailbox op by op in arrival order (one rule set for every backend).
DROP FUNCTION relay_create(bytea[], bytea[], bytea[], bigint);
DROP FUNCTION relay_deposit(bytea[], bytea[], bytea[], bigint, bigint, integer, bigint);
DROP FUNCTION relay_subscribe(bytea[], bytea[], bigint);
DROP FUNCTION relay_ack(bytea[], bytea[], bigint[], integer[], integer[], bigint);
DROP FUNCTION relay_delete(bytea[], bytea[]);
DROP FUNCTION relay_sweep(bigint, bigint, integer);

CREATE FUNCTION relay_sweep(now_s bigint, idle_before bigint, lim integer)
RETURNS TABLE (o_envelopes integer, o_mailboxes integer) LANGUAGE plpgsql AS $$
DECLARE
    gone_bytes bigint;
BEGIN
    WITH gone AS (
        DELETE FROM envelopes
         WHERE ctid IN (SELECT ctid FROM envelopes WHERE expires_at <= now_s LIMIT lim)
        RETURNING mailbox_id, length(body) AS size),
    per_mailbox AS (
        SELECT mailbox_id, count(*) AS n, sum(size) AS b FROM gone GROUP BY mailbox_id),
    updated AS (
        UPDATE mailboxes SET count = count - p.n, bytes = bytes - p.b
          FROM per_mailbox p WHERE id = p.mailbox_id RETURNING 1)
    SELECT coalesce((SELECT sum(n) FROM per_mailbox), 0),
           coalesce((SELECT sum(b) FROM per_mailbox), 0)
      INTO o_envelopes, gone_bytes;
    IF gone_bytes <> 0 THEN
        UPDATE store_usage SET bytes = bytes - gone_bytes WHERE id = 1;
    END IF;
    WITH idle AS (
        DELETE FROM mailboxes
         WHERE id IN (SELECT id FROM mailboxes
                       WHERE count = 0 AND last_active <= idle_before LIMIT lim)
        RETURNING 1)
    SELECT count(*) INTO o_mailboxes FROM idle;
    RETURN NEXT;
END $$;
