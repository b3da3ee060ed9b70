-- Voicemail messages: one row per complete message file in the mailbox directory.
-- Keep this schema equivalent to ../postgres/0004_voicemail.sql.
--
-- The row is written only after the WAV is complete and in place (temp file, then
-- rename, then INSERT), and start-up reconciles rows with files, so a crash can leave
-- neither a listed message without audio nor audio that is never listed.
CREATE TABLE voicemail_messages (
    -- The file's stem: `<created_at_ms>-<random>`; unique across mailboxes.
    id            TEXT    NOT NULL PRIMARY KEY,
    mailbox       TEXT    NOT NULL,
    caller        TEXT    NOT NULL,
    duration_ms   INTEGER NOT NULL CHECK (duration_ms >= 0),
    created_at_ms INTEGER NOT NULL,
    heard         BOOLEAN NOT NULL DEFAULT FALSE,
    -- Relative to the data directory, e.g. `voicemail/sales/1800000000000-ab12.wav`.
    file          TEXT    NOT NULL
);
CREATE INDEX voicemail_messages_mailbox ON voicemail_messages (mailbox, created_at_ms);
