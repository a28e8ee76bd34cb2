-- What each body says about its message (user, mailbox, GUID, dates), for recovering mail
-- from the store alone; NULL for objects that are not bodies or were written before.
ALTER TABLE strata_objects
    ADD COLUMN mail_user TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    ADD COLUMN mail_mailbox BIGINT NULL,
    ADD COLUMN mail_mailbox_name TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    ADD COLUMN mail_guid CHAR(32) CHARACTER SET ascii NULL,
    ADD COLUMN mail_date BIGINT NULL,
    ADD COLUMN mail_zone INTEGER NULL,
    ADD COLUMN mail_saved BIGINT NULL;
