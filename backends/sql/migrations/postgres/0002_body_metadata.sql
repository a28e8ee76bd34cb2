-- What each body says about its message (user, mailbox, GUID, dates), for recovering mail
-- from the store alone; NULL for objects that are not bodies or were written before.
ALTER TABLE strata_objects ADD COLUMN mail_user TEXT;
ALTER TABLE strata_objects ADD COLUMN mail_mailbox BIGINT;
ALTER TABLE strata_objects ADD COLUMN mail_mailbox_name TEXT;
ALTER TABLE strata_objects ADD COLUMN mail_guid TEXT;
ALTER TABLE strata_objects ADD COLUMN mail_date BIGINT;
ALTER TABLE strata_objects ADD COLUMN mail_zone INTEGER;
ALTER TABLE strata_objects ADD COLUMN mail_saved BIGINT;
