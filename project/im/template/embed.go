// Package template holds the page templates of the chat UI (html/template
// sources). ui.html is the page served at GET /; it takes .Title and
// .Version (the cache-buster put on every asset URL).
package template

import "embed"

// FS holds every *.html template of this folder.
//
//go:embed *.html
var FS embed.FS
