-- 0001: users, sessions, messages and read marks.
-- Times are Unix milliseconds in INTEGER columns; 0 means "never" for
-- banned_until and muted_until.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    nickname      TEXT    NOT NULL,
    fold          TEXT    NOT NULL UNIQUE, -- model.FoldNickname(nickname): the uniqueness key
    password_hash TEXT    NOT NULL,
    brief         TEXT    NOT NULL DEFAULT '',
    avatar        TEXT    NOT NULL DEFAULT '',
    admin         INTEGER NOT NULL DEFAULT 0,
    banned_until  INTEGER NOT NULL DEFAULT 0,
    muted_until   INTEGER NOT NULL DEFAULT 0,
    created       INTEGER NOT NULL
);

-- Sessions are keyed by a hash of the sid; the sid itself is never stored.
CREATE TABLE sessions (
    sid_hash TEXT    PRIMARY KEY,
    user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created  INTEGER NOT NULL,
    expires  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires);

-- id: acceptance order, never reused (AUTOINCREMENT).
-- seq: the store-wide change sequence, assigned anew on every change.
-- conv_key: model.ConvKey ("room:lobby", "dm:LO:HI", "group:ID").
-- to_user: the addressee of a private message, else 0.
-- file_id, cid: NULL when absent.
CREATE TABLE messages (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    seq      INTEGER NOT NULL UNIQUE,
    conv_key TEXT    NOT NULL,
    sender   INTEGER NOT NULL REFERENCES users (id),
    to_addr  TEXT    NOT NULL,
    to_user  INTEGER NOT NULL DEFAULT 0,
    kind     TEXT    NOT NULL,
    text     TEXT    NOT NULL DEFAULT '',
    file_id  TEXT,
    cid      TEXT,
    ts       INTEGER NOT NULL,
    edited   INTEGER NOT NULL DEFAULT 0,
    deleted  INTEGER NOT NULL DEFAULT 0
);
-- Idempotent retries: one message per (sender, cid).
CREATE UNIQUE INDEX messages_sender_cid ON messages (sender, cid) WHERE cid IS NOT NULL;
-- Load (conv_key, id ranges); sender makes unread counts index-only.
CREATE INDEX messages_conv ON messages (conv_key, id, sender);

-- The private conversations each user has, one row per party, kept by a
-- trigger. After the first message the INSERT OR IGNORE finds its rows and
-- writes nothing, where an index on messages would add an entry (and dirty
-- a page) for every private message.
CREATE TABLE direct_conversations (
    user_id  INTEGER NOT NULL,
    conv_key TEXT    NOT NULL,
    PRIMARY KEY (user_id, conv_key)
) WITHOUT ROWID;
CREATE TRIGGER messages_direct_conversations AFTER INSERT ON messages WHEN NEW.to_user <> 0
BEGIN
    INSERT OR IGNORE INTO direct_conversations (user_id, conv_key)
    VALUES (NEW.sender, NEW.conv_key), (NEW.to_user, NEW.conv_key);
END;

-- How far each user has read each conversation.
CREATE TABLE read_marks (
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    conv_key     TEXT    NOT NULL,
    last_read_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, conv_key)
) WITHOUT ROWID;
