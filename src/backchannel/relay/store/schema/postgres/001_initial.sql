-- Relay schema, version 1 (PostgreSQL). Applied once, in one transaction, by the migrator,
-- inside the relay's own schema (search_path is set to it).
-- A mailbox row holds only hashes of its two capabilities and its fill counters; nothing
-- names a person or links two mailboxes.
CREATE TABLE mailboxes (
    id           bytea   PRIMARY KEY,        -- 16 random bytes chosen by the client
    send_hash    bytea   NOT NULL,           -- token_hash(send token)
    receive_hash bytea   NOT NULL,           -- token_hash(receive token)
    next_seq     bigint  NOT NULL DEFAULT 1, -- seq the next envelope gets
    count        integer NOT NULL DEFAULT 0, -- envelopes stored (quota)
    bytes        bigint  NOT NULL DEFAULT 0, -- envelope bytes stored (quota)
    last_active  bigint  NOT NULL            -- unix seconds of the last authorised use
);
CREATE INDEX mailboxes_idle ON mailboxes (last_active) WHERE count = 0;

CREATE TABLE envelopes (
    mailbox_id bytea  NOT NULL,
    seq        bigint NOT NULL,
    expires_at bigint NOT NULL,              -- unix seconds
    body       bytea  NOT NULL,
    PRIMARY KEY (mailbox_id, seq)
);
-- Ciphertext does not compress: store it out of line without trying.
ALTER TABLE envelopes ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE INDEX envelopes_by_expiry ON envelopes (expires_at);

-- Group commit: each function applies a whole batch of one kind of operation in one
-- statement (one round trip, one commit). Callers sort a batch by mailbox id (stably, so
-- each mailbox keeps its order) so that concurrent nodes lock mailbox rows in one order.
-- Result codes are the wire ErrorCode values: 0 ok, 10 unauthorized, 11 exists, 12 quota.
-- Hashes are compared here, not tokens: the relay only ever holds SHA-256 of a token, and
-- timing on a hash comparison reveals nothing about a token's preimage.

CREATE FUNCTION relay_create(ids bytea[], send_hashes bytea[], receive_hashes bytea[],
                             now_s bigint)
RETURNS TABLE (o_idx integer, o_code integer) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        INSERT INTO mailboxes (id, send_hash, receive_hash, last_active)
        VALUES (ids[i], send_hashes[i], receive_hashes[i], now_s)
        ON CONFLICT (id) DO NOTHING;
        o_idx := i;
        o_code := CASE WHEN FOUND THEN 0 ELSE 11 END;
        RETURN NEXT;
    END LOOP;
END $$;

CREATE FUNCTION relay_deposit(ids bytea[], hashes bytea[], bodies bytea[], now_s bigint,
                              expires bigint, max_count integer, max_bytes bigint)
RETURNS TABLE (o_idx integer, o_seq bigint, o_code integer) LANGUAGE plpgsql AS $$
DECLARE
    m mailboxes%ROWTYPE;
    channel text := 'backchannel_relay.' || current_schema();
BEGIN
    FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        o_idx := i;
        o_seq := 0;
        SELECT * INTO m FROM mailboxes WHERE id = ids[i] FOR UPDATE;
        IF NOT FOUND OR m.send_hash <> hashes[i] THEN
            o_code := 10;
        ELSIF m.count + 1 > max_count OR m.bytes + length(bodies[i]) > max_bytes THEN
            o_code := 12;
        ELSE
            INSERT INTO envelopes (mailbox_id, seq, expires_at, body)
            VALUES (ids[i], m.next_seq, expires, bodies[i]);
            UPDATE mailboxes SET next_seq = m.next_seq + 1, count = m.count + 1,
                   bytes = m.bytes + length(bodies[i]), last_active = now_s
             WHERE id = ids[i];
            -- One wake-up per mailbox per batch: identical notifications in one
            -- transaction are folded into one by the server.
            PERFORM pg_notify(channel, encode(ids[i], 'hex'));
            o_seq := m.next_seq;
            o_code := 0;
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;

CREATE FUNCTION relay_subscribe(ids bytea[], hashes bytea[], now_s bigint)
RETURNS TABLE (o_idx integer, o_pending integer, o_code integer) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        o_idx := i;
        UPDATE mailboxes SET last_active = now_s
         WHERE id = ids[i] AND receive_hash = hashes[i]
        RETURNING count INTO o_pending;
        o_code := CASE WHEN FOUND THEN 0 ELSE 10 END;
        o_pending := coalesce(o_pending, 0);
        RETURN NEXT;
    END LOOP;
END $$;

-- seqs holds every op's seqs back to back; op i owns seqs[starts[i] : starts[i]+counts[i]-1].
CREATE FUNCTION relay_ack(ids bytea[], hashes bytea[], seqs bigint[], starts integer[],
                          counts integer[], now_s bigint)
RETURNS TABLE (o_idx integer, o_removed integer, o_code integer) LANGUAGE plpgsql AS $$
DECLARE
    m mailboxes%ROWTYPE;
    removed_bytes bigint;
BEGIN
    FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        o_idx := i;
        o_removed := 0;
        SELECT * INTO m FROM mailboxes WHERE id = ids[i] FOR UPDATE;
        IF NOT FOUND OR m.receive_hash <> hashes[i] THEN
            o_code := 10;
        ELSE
            WITH gone AS (
                DELETE FROM envelopes
                 WHERE mailbox_id = ids[i]
                   AND seq = ANY (seqs[starts[i] : starts[i] + counts[i] - 1])
                RETURNING length(body) AS size)
            SELECT count(*), coalesce(sum(size), 0) INTO o_removed, removed_bytes FROM gone;
            UPDATE mailboxes SET count = count - o_removed, bytes = bytes - removed_bytes,
                   last_active = now_s
             WHERE id = ids[i];
            o_code := 0;
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;

CREATE FUNCTION relay_delete(ids bytea[], hashes bytea[])
RETURNS TABLE (o_idx integer, o_code integer) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        o_idx := i;
        DELETE FROM mailboxes WHERE id = ids[i] AND receive_hash = hashes[i];
        IF FOUND THEN
            DELETE FROM envelopes WHERE mailbox_id = ids[i];
            o_code := 0;
        ELSE
            o_code := 10;
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;

CREATE FUNCTION relay_sweep(now_s bigint, idle_before bigint, lim integer)
RETURNS TABLE (o_envelopes integer, o_mailboxes integer) LANGUAGE plpgsql AS $$
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
    SELECT coalesce((SELECT sum(n) FROM per_mailbox), 0), 0 INTO o_envelopes, o_mailboxes;
    WITH idle AS (
        DELETE FROM mailboxes
         WHERE id IN (SELECT id FROM mailboxes
                       WHERE count = 0 AND last_active <= idle_before LIMIT lim)
        RETURNING 1)
    SELECT count(*) INTO o_mailboxes FROM idle;
    RETURN NEXT;
END $$;
