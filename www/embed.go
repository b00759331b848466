// Package www holds the browser UI's static assets. They are embedded into
// the binary and served under /static/ (www/app.js is /static/app.js).
package www

import "embed"

// FS holds the assets: the entry module, its modules under js/, the style
// sheet and the icon.
//
//go:embed app.js style.css favicon.svg js/*.js
var FS embed.FS
