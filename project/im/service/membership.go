package service

import (
	"cmp"
	"slices"
	"sync"

	"dce/common/model"
)

// membership is every group and who is in it, in memory: a group message,
// a typing event and a read mark ask it instead of the store.
//
// Concurrency contract: after load (at start, before any request), only the
// store's publisher goroutine changes it, from the after-commit actions of
// group writes (groups.go), in commit order with every message's push; so
// a message committed after a removal finds the member gone, and one
// committed after an invite finds the invited there. mu guards groups and
// every groupEntry; readers hold it for reading. A groupEntry's members
// slice is never changed below its length once handed out (a join appends,
// a removal makes a new slice), so a reader may keep the slice it got
// after unlocking.
type membership struct {
	mu     sync.RWMutex
	groups map[int64]*groupEntry
}

// groupEntry is one group in memory.
type groupEntry struct {
	group   model.Group
	members []int64 // join order
	set     map[int64]struct{}
}

func newMembership() *membership { return &membership{groups: make(map[int64]*groupEntry)} }

// load replaces everything with what the store holds.
func (m *membership) load(groups []model.GroupMembers) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.groups = make(map[int64]*groupEntry, len(groups))
	for _, g := range groups {
		m.putLocked(g.Group, g.MemberIDs)
	}
}

func (m *membership) putLocked(g model.Group, members []int64) {
	e := &groupEntry{group: g, members: slices.Clip(slices.Clone(members)), set: make(map[int64]struct{}, len(members))}
	for _, id := range members {
		e.set[id] = struct{}{}
	}
	e.group.Members = len(e.members)
	m.groups[g.ID] = e
}

// group returns a group, whether it exists, and whether user is in it.
func (m *membership) group(id, user int64) (g model.Group, found, member bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.groups[id]
	if !ok {
		return model.Group{}, false, false
	}
	_, member = e.set[user]
	return e.group, true, member
}

// members returns a group's members in join order (nil if there is no
// such group). The caller must not change the slice.
func (m *membership) members(id int64) []int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if e, ok := m.groups[id]; ok {
		return e.members
	}
	return nil
}

// visibleTo lists, by id, the groups user is in and the open ones.
func (m *membership) visibleTo(user int64) []model.Group {
	m.mu.RLock()
	list := make([]model.Group, 0, len(m.groups))
	for _, e := range m.groups {
		if _, member := e.set[user]; member || !e.group.Private {
			list = append(list, e.group)
		}
	}
	m.mu.RUnlock()
	slices.SortFunc(list, func(a, b model.Group) int { return cmp.Compare(a.ID, b.ID) })
	return list
}

// apply records a committed change (added: change.User joined; else a
// removal when change.User is set) and returns who is to hear of it: the
// members after it, and, for a removal, the removed user as well (the
// members before it). Call it only on the store's publisher.
func (m *membership) apply(change model.GroupChange, added bool) (audience []int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := change.Group.ID
	if change.Members != nil { // a creation
		m.putLocked(change.Group, change.Members)
		return m.groups[id].members
	}
	e, ok := m.groups[id]
	if !ok {
		return nil
	}
	before := e.members
	_, member := e.set[change.User]
	switch {
	case change.User == 0:
	case added && !member:
		e.set[change.User] = struct{}{}
		e.members = append(e.members, change.User)
	case !added && member:
		delete(e.set, change.User)
		e.members = slices.DeleteFunc(slices.Clone(before), func(u int64) bool { return u == change.User })
	}
	e.group = change.Group
	e.group.Members = len(e.members)
	if change.Dissolved {
		delete(m.groups, id)
	}
	if len(e.members) < len(before) {
		return before
	}
	return e.members
}
