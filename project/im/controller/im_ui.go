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

// Render writes the chat page.
func (u *ImUi) Render(w io.Writer) error {
	return u.page.Execute(w, struct{ Title, Version string }{"Dce chat", u.Version})
}
