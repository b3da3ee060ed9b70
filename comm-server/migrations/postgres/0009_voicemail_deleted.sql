-- A deleted voicemail message keeps its row (its file is gone), marked with when it
-- was deleted, so reports of past periods still count the messages callers left.
-- Keep this schema equivalent to ../sqlite/0009_voicemail_deleted.sql.
--
-- NULL while the message is listed; every mailbox listing reads only those rows.
ALTER TABLE voicemail_messages ADD COLUMN deleted_at_ms BIGINT;
