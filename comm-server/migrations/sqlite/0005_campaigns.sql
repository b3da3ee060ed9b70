-- Outbound campaigns: their run state, contact lists, do-not-call lists and attempts.
-- Keep this schema equivalent to ../postgres/0005_campaigns.sql (same columns, same
-- nullability); times are Unix milliseconds, JSON is stored as text on both backends.

-- One row per configured campaign; the running server polls `state`, the CLI sets it.
CREATE TABLE campaigns (
    name          TEXT    NOT NULL PRIMARY KEY,
    state         TEXT    NOT NULL CHECK (state IN ('draft', 'running', 'paused', 'stopped')),
    updated_at_ms INTEGER NOT NULL
);

-- The people a campaign calls; one row per (campaign, number).
CREATE TABLE campaign_contacts (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign           TEXT    NOT NULL REFERENCES campaigns (name) ON DELETE CASCADE,
    e164               TEXT    NOT NULL,
    customer_id        INTEGER REFERENCES customers (id) ON DELETE SET NULL,
    name               TEXT    NOT NULL,
    -- An IANA zone (`Europe/London`); NULL: the campaign's default.
    time_zone          TEXT,
    attributes_json    TEXT    NOT NULL DEFAULT '{}',
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    state              TEXT    NOT NULL CHECK (state IN ('pending', 'in-progress', 'done')),
    last_outcome       TEXT,
    UNIQUE (campaign, e164)
);
CREATE INDEX campaign_contacts_due ON campaign_contacts (campaign, state, next_attempt_at_ms);

-- Numbers never to dial: a campaign's own list, or everyone's when `campaign` is NULL.
CREATE TABLE do_not_call (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    e164        TEXT    NOT NULL,
    campaign    TEXT    REFERENCES campaigns (name) ON DELETE CASCADE,
    added_at_ms INTEGER NOT NULL
);
CREATE INDEX do_not_call_e164 ON do_not_call (e164);

-- Every dial a campaign placed, and what became of it.
CREATE TABLE campaign_attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id    INTEGER NOT NULL REFERENCES campaign_contacts (id) ON DELETE CASCADE,
    call_id       TEXT,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER NOT NULL,
    outcome       TEXT    NOT NULL,
    agent         TEXT,
    disposition   TEXT
);
CREATE INDEX campaign_attempts_contact ON campaign_attempts (contact_id, started_at_ms);
