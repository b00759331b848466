// Package template holds the page templates of the chat UI (html/template
// sources). ui.html is the page served at GET /; it takes .Title, .Version
// (the build's version) and .Static (the versioned base path of the
// assets, /static/v<hash>/).
package template

import "embed"

// FS holds every *.html template of this folder.
//
//go:embed *.html
var FS embed.FS
