-- A queued callback the server dialled is its own kind of contact ('callback'), so
-- the history and the screen pop tell it apart from the caller's inbound call.
-- SQLite cannot change a CHECK constraint: the table is rebuilt with the same columns,
-- rows and indexes.
CREATE TABLE contact_history_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id   INTEGER REFERENCES customers (id) ON DELETE SET NULL,
    phone         TEXT,
    kind          TEXT    NOT NULL CHECK (kind IN ('call', 'ivr', 'disposition', 'note', 'voicemail', 'campaign', 'callback')),
    direction     TEXT    CHECK (direction IN ('inbound', 'outbound', 'internal')),
    started_at_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER,
    queue         TEXT,
    agent         TEXT,
    outcome       TEXT,
    call_id       TEXT,
    details_json  TEXT    NOT NULL DEFAULT '{}'
);
INSERT INTO contact_history_new
    (id, customer_id, phone, kind, direction, started_at_ms, ended_at_ms, queue, agent,
     outcome, call_id, details_json)
SELECT id, customer_id, phone, kind, direction, started_at_ms, ended_at_ms, queue, agent,
       outcome, call_id, details_json
FROM contact_history;
DROP TABLE contact_history;
ALTER TABLE contact_history_new RENAME TO contact_history;
CREATE INDEX contact_history_customer ON contact_history (customer_id, started_at_ms);
CREATE INDEX contact_history_phone ON contact_history (phone, started_at_ms);
CREATE INDEX contact_history_call_id ON contact_history (call_id);
