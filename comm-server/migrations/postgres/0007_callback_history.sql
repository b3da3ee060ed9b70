-- A queued callback the server dialled is its own kind of contact ('callback'), so
-- the history and the screen pop tell it apart from the caller's inbound call.
ALTER TABLE contact_history DROP CONSTRAINT contact_history_kind_check;
ALTER TABLE contact_history ADD CONSTRAINT contact_history_kind_check
    CHECK (kind IN ('call', 'ivr', 'disposition', 'note', 'voicemail', 'campaign', 'callback'));
