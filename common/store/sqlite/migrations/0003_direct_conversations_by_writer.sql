-- 0003: the writer keeps direct_conversations, not a trigger.
--
-- The trigger ran a sub-program with two INSERT OR IGNORE probes for every
-- private message, about a sixth of the single writer's time per message,
-- although after a conversation's first message they never find anything
-- to add. The writer now adds a conversation's two rows with the message
-- that starts it, in the same transaction, and remembers which it has
-- seen (sqlite.DB.noteDirect). The rows already there stay as they are.

DROP TRIGGER IF EXISTS messages_direct_conversations;
