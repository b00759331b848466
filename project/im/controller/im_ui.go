package controller

import (
	"html/template"
	"io"

	tmpl "dce/project/im/template"
)

// ImUi renders the chat's pages.
type ImUi struct {
	Version string
	page    *template.Template
}

// NewImUi parses the page templates; a broken template stops the program
// at start.
func NewImUi(version string) *ImUi {
	return &ImUi{Version: version, page: template.Must(template.ParseFS(tmpl.FS, "ui.html"))}
}

// Render writes the chat page. static is the base path its assets are
// served under (/static/v<hash>/, ending in a slash): every asset URL of
// the page starts with it, so a page and its modules are always of one
// build.
func (u *ImUi) Render(w io.Writer, static string) error {
	return u.page.Execute(w, struct{ Title, Version, Static string }{"Dce chat", u.Version, static})
}
