-- 0006: the search index leaves the store file.
--
-- The index of 0005 was written by the store's single writer in the
-- transaction of each message, and cost it half its append rate. It now
-- lives in a file of its own next to the store (dce-search.db), kept by
-- its own goroutine, which follows the change sequence (indexer.go); a
-- store upgraded from 0005 is indexed there anew on its first start.
-- Dropping the table here frees its pages, and secure_delete (in every
-- connection's DSN) overwrites them with zeros, so the words of the
-- messages it indexed do not stay behind in this file.

DROP TABLE IF EXISTS messages_search;
