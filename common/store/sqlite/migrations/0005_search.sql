-- 0005: the search index (im/search) and what deletion leaves behind.
--
-- messages_search indexes each message's text by trigrams (FTS5's trigram
-- tokenizer, folding case), so any substring of three characters or more
-- is found in any script, Chinese and Japanese included, without word
-- segmentation. It is contentless: the text itself stays in messages
-- alone, and the index's rowid is the message's id. contentless_delete
-- lets the writer remove a row (a deleted message) or replace it (an
-- edit) by rowid; 'secure-delete' makes FTS5 remove a deleted row's
-- entries from the index at once instead of leaving them to a later
-- merge, so a deleted message's words leave the index with it.
--
-- The writer keeps the index in the transaction that stores, edits or
-- deletes a message (sqlite.DB's apply functions), so a message is found
-- as soon as its im/send has replied. The messages already stored are
-- indexed here, once.

CREATE VIRTUAL TABLE messages_search USING fts5 (
    text,
    content = '',
    contentless_delete = 1,
    tokenize = 'trigram'
);
INSERT INTO messages_search (messages_search, rank) VALUES ('secure-delete', 1);
INSERT INTO messages_search (rowid, text)
    SELECT id, text FROM messages WHERE deleted = 0 AND text <> '' ORDER BY id;
