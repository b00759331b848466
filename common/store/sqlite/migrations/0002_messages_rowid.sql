-- 0002: messages.id becomes a plain INTEGER PRIMARY KEY.
--
-- AUTOINCREMENT made every insert update sqlite_sequence as well, about a
-- tenth of the single writer's time per message. Without it, SQLite gives
-- each new row one more than the largest id in the table. Messages are
-- never removed (a deletion only sets deleted), so an id is still never
-- reused and ids still follow acceptance order.
--
-- SQLite cannot drop AUTOINCREMENT in place: the table is rebuilt with the
-- same columns and rows, then its indexes and trigger are made again. This
-- runs once, in the migration's transaction, and copies every message.

CREATE TABLE messages_rebuilt (
    id       INTEGER PRIMARY KEY,
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
INSERT INTO messages_rebuilt (id, seq, conv_key, sender, to_addr, to_user, kind, text, file_id, cid, ts, edited, deleted)
    SELECT id, seq, conv_key, sender, to_addr, to_user, kind, text, file_id, cid, ts, edited, deleted
    FROM messages ORDER BY id;
DROP TABLE messages; -- with its indexes, its trigger and its sqlite_sequence row
ALTER TABLE messages_rebuilt RENAME TO messages;

CREATE UNIQUE INDEX messages_sender_cid ON messages (sender, cid) WHERE cid IS NOT NULL;
CREATE INDEX messages_conv ON messages (conv_key, id, sender);
CREATE TRIGGER messages_direct_conversations AFTER INSERT ON messages WHEN NEW.to_user <> 0
BEGIN
    INSERT OR IGNORE INTO direct_conversations (user_id, conv_key)
    VALUES (NEW.sender, NEW.conv_key), (NEW.to_user, NEW.conv_key);
END;
