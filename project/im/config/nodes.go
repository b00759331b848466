// Package config is the chat's node table: Dce's nodes.php in typed Go. One
// row per node of PROTOCOL.md section 5; `dce help` prints exactly this.
package config

import (
	"slices"

	"dce/app/node"
	"dce/project/im/controller"
)

// Nodes is the chat's node table, wired to its controllers.
func Nodes(im *controller.ImService, admin *controller.Admin) []node.Node {
	return slices.Concat(
		[]node.Node{
			{Path: "ping", Name: "Ping: the server's time", Methods: node.Net, Auth: node.Public, Do: im.Ping},
			{Path: "im/login", Name: "Log in (an unknown nickname registers)", Methods: node.Net, Auth: node.Public, Do: im.Login},
			{Path: "im/resume", Name: "Resume a session by sid", Methods: node.WebSocket | node.TCP | node.UDP, Auth: node.Public, Do: im.Resume},
			{Path: "im/verify", Name: "Prove this UDP address receives: the token of the login's reply", Methods: node.UDP, Auth: node.Public, Do: im.Verify},
			{Path: "im/signer", Name: "Who this connection is", Methods: node.Net, Auth: node.Public, Do: im.Signer},
		},
		node.Group(node.Node{Path: "im", Methods: node.Net, Auth: node.User},
			node.Node{Path: "logout", Name: "Log out everywhere this session is", Do: im.Logout},
			node.Node{Path: "users", Name: "Who is online", Do: im.Users},
			node.Node{Path: "send", Name: "Send a message (replied after it is stored)", Do: im.Send},
			node.Node{Path: "load", Name: "Page through a conversation (or around one message)", Do: im.Load},
			node.Node{Path: "sync", Name: "Every change after a sequence number", Do: im.Sync},
			node.Node{Path: "conversations", Name: "My conversations with unread counts", Do: im.Conversations},
			node.Node{Path: "read", Name: "Mark a conversation read", Do: im.Read},
			node.Node{Path: "typing", Name: "Tell the others I am typing", Do: im.Typing},
			node.Node{Path: "profile", Name: "Change my brief", Do: im.Profile},
			node.Node{Path: "edit", Name: "Edit my message (replied after it is stored)", Do: im.Edit},
			node.Node{Path: "delete", Name: "Delete my message, or any as admin (replied after it is stored)", Do: im.Delete},
			node.Node{Path: "search", Name: "Search what I may read", Do: im.Search},
		),
		node.Group(node.Node{Path: "im/group", Methods: node.Net, Auth: node.User},
			node.Node{Path: "create", Name: "Create a group (I own it)", Do: im.GroupCreate},
			node.Node{Path: "join", Name: "Join an open group", Do: im.GroupJoin},
			node.Node{Path: "invite", Name: "Make someone a member of a group I am in", Do: im.GroupInvite},
			node.Node{Path: "leave", Name: "Leave a group", Do: im.GroupLeave},
			node.Node{Path: "remove", Name: "Remove a member (the owner only)", Do: im.GroupRemove},
			node.Node{Path: "rename", Name: "Rename a group (the owner only)", Do: im.GroupRename},
			node.Node{Path: "list", Name: "My groups and the open ones", Do: im.GroupList},
			node.Node{Path: "members", Name: "A group's members and their places", Do: im.GroupMembers},
		),
		node.Group(node.Node{Path: "admin", Methods: node.Net, Auth: node.Admin},
			node.Node{Path: "stats", Name: "Server counters", Do: admin.Stats},
			node.Node{Path: "kick", Name: "Close a user's connections on every node", Do: admin.Kick},
			node.Node{Path: "ban", Name: "Ban a user for minutes (absent: for good; 0 lifts it)", Do: admin.Ban},
			node.Node{Path: "mute", Name: "Mute a user for minutes (0 lifts it)", Do: admin.Mute},
		),
		[]node.Node{
			{Path: "user/admin", Name: "Grant the admin role: dce user admin NICKNAME [-config FILE]", Methods: node.CLI, Auth: node.Public, Do: admin.GrantAdmin},
		},
	)
}
