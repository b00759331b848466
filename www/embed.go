// Package www holds the browser UI's static assets. They are embedded into
// the binary and served under /static/v<hash>/ (www/app.js is
// /static/v<hash>/app.js; the hash is of every file here), and
// under /static/ too.
package www

import "embed"

// FS holds the assets: the entry module, its modules under js/, the style
// sheet and the icon.
//
//go:embed app.js style.css favicon.svg js/*.js js/i18n/*.js
var FS embed.FS
