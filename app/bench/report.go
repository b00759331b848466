package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// Run is one `dce bench ... -json` line: its label, its workload and its
// numeric figures by dotted name ("latency.p99_ms").
type Run struct {
	Label    string
	Workload string
	Figures  map[string]float64
}

// ReadRuns reads JSON lines, skipping any line that is not a JSON object
// (progress, a shell's echo).
func ReadRuns(r io.Reader) ([]Run, error) {
	var runs []Run
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var fields map[string]any
		if err := json.Unmarshal(line, &fields); err != nil {
			return nil, fmt.Errorf("a result line: %w", err)
		}
		run := Run{Figures: map[string]float64{}}
		run.Label, _ = fields["label"].(string)
		run.Workload, _ = fields["workload"].(string)
		flatten("", fields, run.Figures)
		if run.Label == "" {
			run.Label = run.Workload
		}
		runs = append(runs, run)
	}
	return runs, sc.Err()
}

func flatten(prefix string, v any, out map[string]float64) {
	switch v := v.(type) {
	case float64:
		out[prefix] = v
	case bool:
		if v {
			out[prefix] = 1
		} else {
			out[prefix] = 0
		}
	case map[string]any:
		for k, x := range v {
			name := k
			if prefix != "" {
				name = prefix + "." + k
			}
			flatten(name, x, out)
		}
	}
}

// reported are the figures the table shows per workload. A figure whose
// name is in worst is shown as its worst (largest) value over the runs,
// every other as the median.
var (
	reported = map[string][]string{
		"conns":        {"connections", "errors", "dropped", "ramp_s", "rss_per_conn_bytes"},
		"fanout":       fanoutFigures,
		"fanout-plain": fanoutFigures,
		"fanout-group": fanoutFigures,
		"pairs":        {"pairs", "acked_per_s", "failed", "missing_in_store", "ack.p50_ms", "ack.p99_ms", "delivery.p99_ms"},
		"login":        {"logins", "logins_per_s", "rate_limited", "failed", "latency.p50_ms", "latency.p99_ms"},
		"floor":        {"readers", "delivered", "latency.p50_ms", "latency.p90_ms", "latency.p99_ms"},
		"disk":         {"n", "rate", "latency.p50_ms", "latency.p90_ms", "latency.p99_ms", "latency.max_ms"},
		"presence":     {"watchers", "joined", "presence_frames", "presence_bytes", "bytes_per_joiner", "watchers_exact", "lists_exact", "joiners_missing"},
	}
	fanoutFigures = []string{"readers", "acked", "lost", "duplicated", "out_of_order", "deliveries_per_s", "deliveries_per_cpu_s",
		"latency.p50_ms", "latency.p99_ms", "ack.p99_ms", "server_cpu_s", "tool_cpu_s"}
	worst = map[string]bool{"errors": true, "dropped": true, "lost": true, "duplicated": true, "out_of_order": true,
		"failed": true, "missing_in_store": true, "joiners_missing": true}
)

// group is the runs of one label, in the order labels first appear.
type group struct {
	label, workload string
	runs            []Run
}

func groups(runs []Run) []*group {
	var out []*group
	byLabel := map[string]*group{}
	for _, r := range runs {
		g := byLabel[r.Label]
		if g == nil {
			g = &group{label: r.Label, workload: r.Workload}
			byLabel[r.Label] = g
			out = append(out, g)
		}
		g.runs = append(g.runs, r)
	}
	return out
}

// figure is the median (or, for a failure count, the worst) of a figure
// over the group's runs, and whether any run had it.
func (g *group) figure(name string) (float64, bool) {
	var values []float64
	for _, r := range g.runs {
		if v, ok := r.Figures[name]; ok {
			values = append(values, v)
		}
	}
	if len(values) == 0 {
		return 0, false
	}
	slices.Sort(values)
	if worst[name] {
		return values[len(values)-1], true
	}
	if n := len(values); n%2 == 0 {
		return (values[n/2-1] + values[n/2]) / 2, true
	}
	return values[len(values)/2], true
}

// WriteTable writes one Markdown row per label: the medians of its runs.
func WriteTable(w io.Writer, runs []Run) {
	fmt.Fprintln(w, "| run | workload | runs | figures (median; failure counts: worst run) |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, g := range groups(runs) {
		var parts []string
		for _, name := range reported[g.workload] {
			if v, ok := g.figure(name); ok {
				parts = append(parts, name+" "+formatFigure(v))
			}
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s |\n", g.label, g.workload, len(g.runs), strings.Join(parts, ", "))
	}
}

func formatFigure(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// LatencyChart draws the paced fan-out runs' (-rate) median p50 and p99
// latency against the number of readers (a logarithmic axis) as an SVG,
// with the floor runs' p99 (the machine's best, no server) when there are
// any.
func LatencyChart(runs []Run) []byte {
	type point struct{ readers, p50, p99 float64 }
	var server, floor []point
	for _, g := range groups(runs) {
		rate, _ := g.figure("rate")
		readers, _ := g.figure("readers")
		p50, _ := g.figure("latency.p50_ms")
		p99, _ := g.figure("latency.p99_ms")
		switch {
		case readers <= 0:
		case g.workload == "fanout" && rate > 0:
			server = append(server, point{readers, p50, p99})
		case g.workload == "floor":
			floor = append(floor, point{readers, p50, p99})
		}
	}
	byReaders := func(a, b point) int { return int(a.readers - b.readers) }
	slices.SortFunc(server, byReaders)
	slices.SortFunc(floor, byReaders)
	const width, height, left, bottom, top, right = 640.0, 360.0, 60.0, 40.0, 30.0, 20.0
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="14">Fan-out: push latency against lobby readers (medians)</text>`+"\n", left)
	all := append(slices.Clone(server), floor...)
	if len(all) == 0 {
		b.WriteString("</svg>\n")
		return b.Bytes()
	}
	minX, maxX, maxY := math.Inf(1), math.Inf(-1), 0.0
	for _, p := range all {
		minX, maxX = min(minX, math.Log10(p.readers)), max(maxX, math.Log10(p.readers))
		maxY = max(maxY, p.p99)
	}
	if maxX-minX < 1 {
		minX, maxX = math.Floor(minX), math.Floor(minX)+1
	}
	maxY = niceCeil(maxY)
	x := func(r float64) float64 { return left + (math.Log10(r)-minX)/(maxX-minX)*(width-left-right) }
	y := func(ms float64) float64 { return height - bottom - ms/maxY*(height-bottom-top) }
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, y(0), width-right, y(0))
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, y(0), left, y(maxY))
	for i := 0; i <= 4; i++ {
		ms := maxY * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%s ms</text>`+"\n", left-6, y(ms)+4, formatFigure(ms))
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#ddd"/>`+"\n", left, y(ms), width-right, y(ms))
	}
	labelled := server // the floor's 9,900 would crowd the server's 10,000
	if len(labelled) == 0 {
		labelled = floor
	}
	ticks := map[float64]bool{}
	for _, p := range labelled {
		if !ticks[p.readers] {
			ticks[p.readers] = true
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">%s</text>`+"\n", x(p.readers), height-bottom+16, formatFigure(p.readers))
		}
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">readers</text>`+"\n", (left+width-right)/2, height-6)
	for _, line := range []struct {
		name, color, dash string
		points            []point
		value             func(point) float64
	}{
		{"p50", "#1f77b4", "", server, func(p point) float64 { return p.p50 }},
		{"p99", "#d62728", "", server, func(p point) float64 { return p.p99 }},
		{"p99 with no server (bench floor)", "#7f7f7f", ` stroke-dasharray="6 4"`, floor, func(p point) float64 { return p.p99 }},
	} {
		if len(line.points) == 0 {
			continue
		}
		var coords []string
		for _, p := range line.points {
			coords = append(coords, fmt.Sprintf("%.1f,%.1f", x(p.readers), y(line.value(p))))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(p.readers), y(line.value(p)), line.color)
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(coords, " "), line.color, line.dash)
		first := line.points[0]
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s">%s</text>`+"\n", x(first.readers)+8, y(line.value(first))-8, line.color, line.name)
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}
