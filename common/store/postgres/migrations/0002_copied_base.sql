-- 0002: where the changes log begins. A store copied from the embedded
-- engine (common/store/storecopy) keeps its messages' seqs, which have
-- gaps there (an edit gives a message a new seq, and the old one names
-- nothing any more); the log then holds the changes above base only, and
-- the counter starts at base.
ALTER TABLE seq_counter ADD COLUMN base bigint NOT NULL DEFAULT 0;
