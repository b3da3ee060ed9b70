-- Voicemail as work: a message in a queue's mailbox (`[[mailbox]] work-queue`) is a
-- task the ACD routes to an agent; the agent's disposition marks it handled here.
-- Keep this schema equivalent to ../postgres/0006_voicemail_work.sql.
--
-- All three are NULL until an agent handled the message; start-up re-enqueues the
-- work-queue messages whose handled_at_ms is NULL.
ALTER TABLE voicemail_messages ADD COLUMN handled_by TEXT;
ALTER TABLE voicemail_messages ADD COLUMN handled_at_ms INTEGER;
ALTER TABLE voicemail_messages ADD COLUMN outcome TEXT;
