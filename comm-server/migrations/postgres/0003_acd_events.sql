-- The ACD's durable event log: one row per event of `crate::acd::Event`, plus a
-- `ServerStarted` marker, in the order the ACD produced them. Reports are computed from
-- it. Keep this schema equivalent to ../sqlite/0003_acd_events.sql.
--
-- `details_json` is the whole event as serde writes it; `kind`, `item_id`, `queue` and
-- `agent` repeat what SQL needs to filter on, with the names (not the config's
-- numbers, which change when the config does).
CREATE TABLE acd_events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms        BIGINT NOT NULL,
    kind         TEXT   NOT NULL,
    item_id      BIGINT,
    queue        TEXT,
    agent        TEXT,
    details_json TEXT   NOT NULL
);
CREATE INDEX acd_events_at_ms ON acd_events (at_ms, id);
