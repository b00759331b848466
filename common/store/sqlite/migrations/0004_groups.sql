-- 0004: groups and their members.
--
-- A group's conversation is messages.conv_key = 'group:' || id. A group
-- whose last member leaves is deleted with its rows here; its messages
-- stay, readable by no one (no member can name it).

-- members: how many rows group_members has for the group, kept by the
-- writes that change them, so that a join need not count them.
CREATE TABLE groups (
    id      INTEGER PRIMARY KEY,
    name    TEXT    NOT NULL,
    owner   INTEGER NOT NULL REFERENCES users (id),
    private INTEGER NOT NULL DEFAULT 0,
    members INTEGER NOT NULL,
    created INTEGER NOT NULL
);

-- joined: the member's place in the group's join order, 1 for the
-- creator, one more than the last for each who joins after (at creation
-- the members named come by lowest id): ownership passes along it when the
-- owner leaves. joined_at: Unix milliseconds.
CREATE TABLE group_members (
    group_id  INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined    INTEGER NOT NULL,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
-- A user's groups: im/sync's and im/conversations' readable set.
CREATE INDEX group_members_user ON group_members (user_id, group_id);
-- Ownership's next in line.
CREATE INDEX group_members_order ON group_members (group_id, joined);
