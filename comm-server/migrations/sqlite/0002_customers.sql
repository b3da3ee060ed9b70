-- Customer records, their phone numbers and their contact history.
-- Keep this schema equivalent to ../postgres/0002_customers.sql (same columns, same
-- nullability); times are Unix milliseconds, JSON is stored as text on both backends.

CREATE TABLE customers (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The record's key in another system (a CRM id); unique when given.
    external_ref    TEXT UNIQUE,
    name            TEXT    NOT NULL,
    account         TEXT,
    email           TEXT,
    -- Any other fields, a JSON object.
    attributes_json TEXT    NOT NULL DEFAULT '{}',
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);
CREATE INDEX customers_account ON customers (account);

-- E.164 numbers (`+442079460958`); one number belongs to one customer.
CREATE TABLE customer_phones (
    customer_id INTEGER NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    e164        TEXT    NOT NULL PRIMARY KEY
);
CREATE INDEX customer_phones_customer_id ON customer_phones (customer_id);

-- Every contact with a customer (or with an unknown number): calls, IVR sessions,
-- dispositions, notes, voicemails, campaign attempts.
CREATE TABLE contact_history (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id   INTEGER REFERENCES customers (id) ON DELETE SET NULL,
    phone         TEXT,
    kind          TEXT    NOT NULL CHECK (kind IN ('call', 'ivr', 'disposition', 'note', 'voicemail', 'campaign')),
    direction     TEXT    CHECK (direction IN ('inbound', 'outbound', 'internal')),
    started_at_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER,
    queue         TEXT,
    agent         TEXT,
    outcome       TEXT,
    call_id       TEXT,
    details_json  TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX contact_history_customer ON contact_history (customer_id, started_at_ms);
CREATE INDEX contact_history_phone ON contact_history (phone, started_at_ms);
CREATE INDEX contact_history_call_id ON contact_history (call_id);
