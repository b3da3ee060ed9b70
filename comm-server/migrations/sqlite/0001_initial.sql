-- SIP accounts, registration bindings and call detail records (CDRs).
-- Keep this schema equivalent to ../postgres/0001_initial.sql: the Rust side reads both
-- through the same queries, so column names, nullability and integer ranges must match.

-- Accounts the registrar authenticates against. Only HA1 digests are kept (RFC 2617 /
-- RFC 8760): never a plaintext password.
CREATE TABLE sip_accounts (
    username     TEXT    NOT NULL PRIMARY KEY,
    realm        TEXT    NOT NULL,
    ha1_md5      TEXT    NOT NULL,
    ha1_sha256   TEXT    NOT NULL,
    display_name TEXT,
    enabled      BOOLEAN NOT NULL DEFAULT TRUE
);

-- RFC 3261 §10 bindings. Expiry is absolute Unix milliseconds so a restart keeps them.
CREATE TABLE bindings (
    aor           TEXT    NOT NULL,
    contact       TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    transport     TEXT    NOT NULL,
    call_id       TEXT    NOT NULL,
    cseq          INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    q_milli       INTEGER CHECK (q_milli BETWEEN 0 AND 1000),
    instance_id   TEXT,
    PRIMARY KEY (aor, contact)
);
CREATE INDEX bindings_expires_at_ms ON bindings (expires_at_ms);

-- One row per call, written once when the call ends.
CREATE TABLE cdrs (
    call_id            TEXT    NOT NULL PRIMARY KEY,
    direction          TEXT    NOT NULL CHECK (direction IN ('inbound', 'outbound', 'internal')),
    caller             TEXT    NOT NULL,
    callee             TEXT    NOT NULL,
    route              TEXT    NOT NULL,
    started_at_ms      INTEGER NOT NULL,
    answered_at_ms     INTEGER,
    ended_at_ms        INTEGER NOT NULL,
    hung_up_by         TEXT    NOT NULL CHECK (hung_up_by IN ('caller', 'callee', 'system')),
    end_reason         TEXT    NOT NULL,
    sip_status         INTEGER NOT NULL,
    legs_json          TEXT    NOT NULL,
    media_quality_json TEXT
);
CREATE INDEX cdrs_started_at_ms ON cdrs (started_at_ms);
