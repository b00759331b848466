package imtest

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"dce/app/servertest"
)

// TestAssetsVersioned: the page names every asset under one
// /static/v<hash>/ path, served with an immutable cache; each module the
// entry module reaches is served there with relative imports only; a path
// of another build is 404, never today's file under yesterday's name.
func TestAssetsVersioned(t *testing.T) {
	s := servertest.Start(t)
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(s.HTTPURL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	_, page := get("/")
	bases := regexp.MustCompile(`(?:href|src)="(/static/[^"]*)"`).FindAllStringSubmatch(page, -1)
	if len(bases) < 3 {
		t.Fatalf("the page names %d assets, want the icon, the style sheet and the entry module: %s", len(bases), page)
	}
	versioned := regexp.MustCompile(`^(/static/v[0-9a-f]{12}/)`)
	m := versioned.FindStringSubmatch(bases[0][1])
	if m == nil {
		t.Fatalf("asset %s is not under /static/v<hash>/", bases[0][1])
	}
	base := m[1]
	for _, a := range bases {
		if !strings.HasPrefix(a[1], base) {
			t.Errorf("asset %s is not under the page's one asset path %s", a[1], base)
		}
	}

	// Every module reachable from app.js, by its relative imports.
	importRe := regexp.MustCompile(`(?:import\s*(?:[\w*{}\s,]+from\s*)?|import\()\s*['"]([^'"]+)['"]`)
	seen := map[string]bool{}
	queue := []string{"app.js"}
	for len(queue) > 0 {
		path := queue[0]
		queue = queue[1:]
		if seen[path] {
			continue
		}
		seen[path] = true
		resp, body := get(base + path)
		if resp.StatusCode != 200 {
			t.Errorf("GET %s%s: %d", base, path, resp.StatusCode)
			continue
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("GET %s%s: Cache-Control %q, want immutable", base, path, cc)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.Contains(ct, "javascript") {
			t.Errorf("GET %s%s: Content-Type %q", base, path, ct)
		}
		dir := path[:strings.LastIndex(path, "/")+1]
		for _, im := range importRe.FindAllStringSubmatch(body, -1) {
			spec := im[1]
			if strings.Contains(spec, "${") { // the language files: each is checked below
				continue
			}
			if !strings.HasPrefix(spec, "./") && !strings.HasPrefix(spec, "../") {
				t.Errorf("%s imports %q: only relative imports keep a page on one build", path, spec)
				continue
			}
			queue = append(queue, cleanJoin(dir, spec))
		}
	}
	for _, want := range []string{"js/chat.js", "js/i18n.js", "js/i18n/en.js"} {
		if !seen[want] {
			t.Errorf("%s is not reached from app.js (reached: %v)", want, seen)
		}
	}
	for _, lang := range []string{"en", "zh"} {
		if resp, _ := get(base + "js/i18n/" + lang + ".js"); resp.StatusCode != 200 {
			t.Errorf("language file %s: %d", lang, resp.StatusCode)
		}
	}

	// Another build's path: 404, not today's file.
	other := "/static/v000000000000/app.js"
	if base+"app.js" == other {
		other = "/static/v111111111111/app.js"
	}
	if resp, _ := get(other); resp.StatusCode != 404 {
		t.Errorf("GET %s: %d, want 404", other, resp.StatusCode)
	}
	// The unversioned path still serves (links that name a file).
	if resp, _ := get("/static/app.js"); resp.StatusCode != 200 || strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Errorf("GET /static/app.js: %d, Cache-Control %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
}

// cleanJoin resolves the relative module specifier spec against dir.
func cleanJoin(dir, spec string) string {
	parts := strings.Split(strings.TrimSuffix(dir, "/"), "/")
	if dir == "" {
		parts = nil
	}
	for _, p := range strings.Split(spec, "/") {
		switch p {
		case ".":
		case "..":
			if len(parts) > 0 {
				parts = parts[:len(parts)-1]
			}
		default:
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/")
}
