-- Scheduled callbacks set by agents in their disposition of a campaign call: the
-- contact is due again at `callback_at_ms` (Unix milliseconds), and while the booking
-- stands the attempts limit does not stop that dial (calling hours and do-not-call
-- still do). Cleared when the contact is dialled. Keep this equivalent to
-- ../sqlite/0008_campaign_callbacks.sql.
ALTER TABLE campaign_contacts ADD COLUMN callback_at_ms BIGINT;
