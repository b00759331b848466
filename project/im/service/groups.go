package service

import (
	"context"
	"errors"
	"slices"

	"dce/app/node"
	"dce/common/model"
	"dce/common/store"
)

// Groups (PROTOCOL.md sections 3 and 5). Who may do what is checked first
// from membership in memory (membership.go), for the reply's code without
// a write, and again by the store in the write's own transaction (the
// writes take who asks), so a permission lost in a commit just before
// cannot be used; every change is a store write
// whose after-commit action, on the store's publisher, changes that memory
// and pushes im/group to the members, so the push of a change and the
// pushes of the messages around it reach everyone in commit order.

// Group events, im/group's "event".
const (
	GroupCreated = "created"
	GroupJoined  = "joined"
	GroupInvited = "invited"
	GroupLeft    = "left"
	GroupRemoved = "removed"
	GroupRenamed = "renamed"
)

// groupEvent is im/group's body.
type groupEvent struct {
	Event string      `json:"event"`
	Group model.Group `json:"group"`
	User  *model.User `json:"user,omitempty"`
}

// LoadGroups reads every group and its members into memory. Call it once,
// after New and before serving.
func (s *Service) LoadGroups(ctx context.Context) error {
	groups, err := s.Store.Groups(ctx)
	if err != nil {
		return err
	}
	s.groups.load(groups)
	return nil
}

// groupStoreError turns the store's refusals into the protocol's codes.
func groupStoreError(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return node.Errorf(node.CodeNotFound, "no such group or user")
	case errors.Is(err, store.ErrFull):
		return node.Errorf(node.CodeForbidden, "the group is full")
	case errors.Is(err, store.ErrForbidden):
		return node.Errorf(node.CodeForbidden, "you may not change this group")
	}
	return err
}

// checkGroupID refuses a missing or impossible group id.
func checkGroupID(id int64) error {
	if id <= 0 {
		return node.Errorf(node.CodeBadRequest, "id is required: a group id")
	}
	return nil
}

// groupFor returns group id for user, who must be a member unless the
// group is open and openToAll: not_found if there is no such group,
// forbidden for a non-member of a private group (whatever openToAll) and
// for a non-member of an open one unless openToAll.
func (s *Service) groupFor(id, user int64, openToAll bool) (model.Group, bool, error) {
	if err := checkGroupID(id); err != nil {
		return model.Group{}, false, err
	}
	g, found, member := s.groups.group(id, user)
	switch {
	case !found:
		return model.Group{}, false, node.Errorf(node.CodeNotFound, "no such group: group:%d", id)
	case !member && (g.Private || !openToAll):
		return model.Group{}, false, node.Errorf(node.CodeForbidden, "you are not a member of group:%d", id)
	}
	return g, member, nil
}

// groupName checks a name for create and rename.
func groupName(name *string) (string, error) {
	if name == nil {
		return "", node.Errorf(node.CodeBadRequest, "name is required")
	}
	normalized, err := model.NormalizeGroupName(*name)
	if err != nil {
		return "", node.Errorf(node.CodeBadRequest, "name: %v (1-%d characters)", err, model.MaxGroupName)
	}
	return normalized, nil
}

// knownUser returns the public view of an account, not_found if none.
func (s *Service) knownUser(ctx context.Context, id int64) (model.User, error) {
	if id <= 0 {
		return model.User{}, node.Errorf(node.CodeBadRequest, "user is required: a user id")
	}
	acct, err := s.account(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return model.User{}, node.Errorf(node.CodeNotFound, "no such user: %d", id)
	}
	return acct.User, err
}

// pushGroup is a group write's after-commit action: it changes membership
// and tells the audience (membership.apply), except the connection that
// asked. It runs on the store's publisher.
func (s *Service) pushGroup(event string, about *model.User, added bool, exceptConn uint64) func(model.GroupChange) {
	return func(change model.GroupChange) {
		audience := s.groups.apply(change, added)
		if len(audience) > 0 {
			s.Stored.Deliver(audience, push("im/group", groupEvent{event, change.Group, about}), exceptConn)
		}
	}
}

// MaxCreateMembers is the most members im/group/create may name (more are
// invited): a creation is one write, and the single writer must not be
// held long by one request.
const MaxCreateMembers = 256

// CreateGroup creates a group owned by user with the members named. The
// cheap checks come first, then the creations limiter (so a refused
// creation costs a token too), then the member cap, and only then does
// anything look users up: the store, in the creation's own transaction.
func (s *Service) CreateGroup(ctx context.Context, conn uint64, user int64, name *string, private bool, members []int64) (model.Group, error) {
	normalized, err := groupName(name)
	if err != nil {
		return model.Group{}, err
	}
	others := make([]int64, 0, len(members))
	for _, id := range members {
		if id <= 0 {
			return model.Group{}, node.Errorf(node.CodeBadRequest, "members: %d is not a user id", id)
		}
		if id != user {
			others = append(others, id)
		}
	}
	slices.Sort(others)
	others = slices.Compact(others)
	if len(others) > MaxCreateMembers {
		return model.Group{}, node.Errorf(node.CodeBadRequest,
			"members: at most %d at creation (%d named); invite the others", MaxCreateMembers, len(others))
	}
	if wait, ok := s.creations.allow(user, s.Now()); !ok {
		return model.Group{}, node.RateLimited(wait, "too many groups created; slow down")
	}
	if limit := s.Limits().GroupMembers; limit > 0 && 1+len(others) > limit {
		return model.Group{}, node.Errorf(node.CodeForbidden, "the group is full (at most %d members)", limit)
	}
	creator, err := s.knownUser(ctx, user)
	if err != nil {
		return model.Group{}, err
	}
	change, err := s.Store.CreateGroup(ctx, model.NewGroup{Name: normalized, Owner: user, Private: private, Members: others},
		s.Limits().GroupMembers, s.pushGroup(GroupCreated, &creator, false, conn))
	if errors.Is(err, store.ErrNotFound) {
		return model.Group{}, node.Errorf(node.CodeNotFound, "members: a user named does not exist")
	}
	if err != nil {
		return model.Group{}, groupStoreError(err)
	}
	return change.Group, nil
}

// JoinGroup makes user a member of an open group; already a member, it
// returns the group and pushes nothing.
func (s *Service) JoinGroup(ctx context.Context, conn uint64, user, id int64) (model.Group, error) {
	g, member, err := s.groupFor(id, user, true) // a private group's non-member is refused here
	if err != nil || member {
		return g, err
	}
	joiner, err := s.knownUser(ctx, user)
	if err != nil {
		return model.Group{}, err
	}
	change, err := s.Store.AddGroupMember(ctx, id, user, user, s.Limits().GroupMembers, s.pushGroup(GroupJoined, &joiner, true, conn))
	if errors.Is(err, store.ErrForbidden) {
		return model.Group{}, node.Errorf(node.CodeForbidden, "you are not a member of group:%d", id)
	}
	if err != nil {
		return model.Group{}, groupStoreError(err)
	}
	return change.Group, nil
}

// InviteToGroup makes invitee a member; any member may invite. An invitee
// already a member changes nothing.
func (s *Service) InviteToGroup(ctx context.Context, conn uint64, user, id, invitee int64) error {
	if _, _, err := s.groupFor(id, user, false); err != nil {
		return err
	}
	guest, err := s.knownUser(ctx, invitee)
	if err != nil {
		return err
	}
	if _, _, member := s.groups.group(id, invitee); member {
		return nil
	}
	if err := s.allowUpdate(user); err != nil {
		return err
	}
	_, err = s.Store.AddGroupMember(ctx, id, invitee, user, s.Limits().GroupMembers, s.pushGroup(GroupInvited, &guest, true, conn))
	if errors.Is(err, store.ErrForbidden) { // removed since the check above
		return node.Errorf(node.CodeForbidden, "you are not a member of group:%d", id)
	}
	return groupStoreError(err)
}

// LeaveGroup takes user out of a group. The owner's leaving passes
// ownership on; the last member's dissolves the group.
func (s *Service) LeaveGroup(ctx context.Context, conn uint64, user, id int64) error {
	_, member, err := s.groupFor(id, user, true)
	if err != nil || !member {
		return err // not a member of an open group: nothing to do
	}
	leaver, err := s.knownUser(ctx, user)
	if err != nil {
		return err
	}
	_, err = s.Store.RemoveGroupMember(ctx, id, user, user, s.pushGroup(GroupLeft, &leaver, false, conn))
	return groupStoreError(err)
}

// RemoveFromGroup takes member out of a group; the owner only, and not
// the owner itself (leave is for that).
func (s *Service) RemoveFromGroup(ctx context.Context, conn uint64, user, id, member int64) error {
	g, _, err := s.groupFor(id, user, false)
	if err != nil {
		return err
	}
	if member <= 0 {
		return node.Errorf(node.CodeBadRequest, "user is required: a user id")
	}
	if g.Owner != user {
		return node.Errorf(node.CodeForbidden, "only the owner of group:%d may remove members", id)
	}
	if member == user {
		return node.Errorf(node.CodeBadRequest, "the owner cannot remove itself: use im/group/leave")
	}
	removed, err := s.knownUser(ctx, member)
	if err != nil {
		return err
	}
	if _, _, isMember := s.groups.group(id, member); !isMember {
		return node.Errorf(node.CodeNotFound, "user %d is not a member of group:%d", member, id)
	}
	if err := s.allowUpdate(user); err != nil {
		return err
	}
	_, err = s.Store.RemoveGroupMember(ctx, id, member, user, s.pushGroup(GroupRemoved, &removed, false, conn))
	if errors.Is(err, store.ErrForbidden) { // ownership passed on since the check above
		return node.Errorf(node.CodeForbidden, "only the owner of group:%d may remove members", id)
	}
	return groupStoreError(err)
}

// RenameGroup renames a group; the owner only.
func (s *Service) RenameGroup(ctx context.Context, conn uint64, user, id int64, name *string) (model.Group, error) {
	g, _, err := s.groupFor(id, user, false)
	if err != nil {
		return model.Group{}, err
	}
	normalized, err := groupName(name)
	if err != nil {
		return model.Group{}, err
	}
	if g.Owner != user {
		return model.Group{}, node.Errorf(node.CodeForbidden, "only the owner of group:%d may rename it", id)
	}
	if err := s.allowUpdate(user); err != nil {
		return model.Group{}, err
	}
	change, err := s.Store.RenameGroup(ctx, id, normalized, user, s.pushGroup(GroupRenamed, nil, false, conn))
	if errors.Is(err, store.ErrForbidden) { // ownership passed on since the check above
		return model.Group{}, node.Errorf(node.CodeForbidden, "only the owner of group:%d may rename it", id)
	}
	if err != nil {
		return model.Group{}, groupStoreError(err)
	}
	return change.Group, nil
}

// ListGroups lists the groups user is in and the open ones, by id, each
// saying whether user is a member; rate-limited with the updates (the
// list grows with the open groups).
func (s *Service) ListGroups(user int64) ([]model.ListedGroup, error) {
	if err := s.allowUpdate(user); err != nil {
		return nil, err
	}
	return s.groups.visibleTo(user), nil
}

// GroupMembers lists a group's members in join order, each with the
// places they are online at (0 when offline): for members, and for anyone
// when the group is open. Its cost grows with the members only (a place
// lookup each), and it is rate-limited with the updates.
func (s *Service) GroupMembers(ctx context.Context, user, id int64) ([]model.Online, error) {
	if _, _, err := s.groupFor(id, user, true); err != nil {
		return nil, err
	}
	if err := s.allowUpdate(user); err != nil {
		return nil, err
	}
	ids := s.groups.members(id)
	users, err := s.Store.UsersByID(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]model.Online, 0, len(ids))
	for _, id := range ids {
		if u, ok := users[id]; ok {
			places, online := s.Hub.Places(id)
			if !online {
				places = 0
			}
			out = append(out, model.Online{User: u, Places: places})
		}
	}
	return out, nil
}
