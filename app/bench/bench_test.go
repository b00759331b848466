package bench

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	samples := make([]time.Duration, 20000)
	for i := range samples {
		samples[i] = time.Duration(rand.ExpFloat64() * float64(5*time.Millisecond))
		h.Add(samples[i])
	}
	slices.Sort(samples)
	for _, q := range []float64{0.5, 0.9, 0.99} {
		want := samples[int(q*float64(len(samples)))-1]
		got := h.Quantile(q)
		if d := float64(got-want) / float64(want); d > 0.04 || d < -0.04 {
			t.Errorf("q%.2f = %s, want %s within 4%%", q, got, want)
		}
	}
	if got := h.Quantile(1); got > samples[len(samples)-1] {
		t.Errorf("q1 = %s over the max %s", got, samples[len(samples)-1])
	}
	for us := uint64(0); us < 1<<40; us = us*3/2 + 1 {
		b := bucketOf(us)
		if v := bucketValue(b); float64(v) < float64(us)*0.96 || float64(v) > float64(us)*1.04+1 {
			t.Fatalf("%d us lands in bucket %d worth %d", us, b, v)
		}
	}
}

func TestParseSources(t *testing.T) {
	got, err := ParseSources("127.0.0.2-127.0.0.4, ::1")
	if err != nil || len(got) != 4 || got[0].String() != "127.0.0.2" || got[2].String() != "127.0.0.4" || got[3].String() != "::1" {
		t.Fatalf("ParseSources = %v, %v", got, err)
	}
	for _, bad := range []string{"10.0.0.1", "127.0.0.9-127.0.0.2", "126.255.255.255-127.0.0.1", "x"} {
		if _, err := ParseSources(bad); err == nil {
			t.Errorf("ParseSources(%q) accepted", bad)
		}
	}
	if got, _ := ParseSources("127.0.0.1-127.0.3.0"); len(got) != 0 {
		t.Errorf("a range of %d addresses was accepted", len(got))
	}
}

func TestOptionsOnlyTargetLoopback(t *testing.T) {
	for _, u := range []string{"ws://192.0.2.1:20461/ws", "http://example.com/", "ftp://127.0.0.1/"} {
		o := Options{URL: u}
		if err := o.Check(); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
	o := Options{URL: "http://127.0.0.1:20461"}
	if err := o.Check(); err != nil || o.URL != "ws://127.0.0.1:20461/ws" {
		t.Fatalf("Check: %v, URL %s", err, o.URL)
	}
}

func TestBenchText(t *testing.T) {
	text := benchText(3, 1234, 64)
	if len(text) != 64 {
		t.Fatalf("len %d", len(text))
	}
	body := []byte(`{"id":9,"from":{"id":1,"nickname":"a"},"text":"` + text + `","ts":1}`)
	sender, seq, sent, ok := parseBenchText(body)
	if !ok || sender != 3 || seq != 1234 || time.Since(time.Unix(0, sent)) > time.Minute {
		t.Fatalf("parse = %d %d %d %v", sender, seq, sent, ok)
	}
	for _, bad := range []string{`{"text":"hello"}`, `{"text":"1 2 3"}`, `{"text":"1 -2 3 "}`, `{"text":"1  3 "}`,
		`{"text":"1 2 9223372036854775808 "}`, `{"text":"1 2 12345678901234567890 "}`, `{"text":"warm-up"}`, `{"text":"1 2x 3 "}`} {
		if _, _, _, ok := parseBenchText([]byte(bad)); ok {
			t.Errorf("%s parsed as a bench text", bad)
		}
	}
	if _, _, _, ok := parseBenchFields(warmUpText); ok {
		t.Error("the warm-up frame parsed as a bench message")
	}
}

func TestReportMediansAndWorst(t *testing.T) {
	in := strings.NewReader(`bench: progress line
{"workload":"fanout","label":"f1k","readers":1000,"rate":20,"lost":0,"deliveries_per_cpu_s":3,"latency":{"p50_ms":1,"p99_ms":10}}
{"workload":"fanout","label":"f1k","readers":1000,"rate":20,"lost":2,"deliveries_per_cpu_s":1,"latency":{"p50_ms":2,"p99_ms":30}}
{"workload":"fanout","label":"f1k","readers":1000,"rate":20,"lost":0,"deliveries_per_cpu_s":2,"latency":{"p50_ms":3,"p99_ms":20}}
{"workload":"fanout","label":"f10k","readers":10000,"rate":2,"lost":0,"latency":{"p50_ms":9,"p99_ms":90}}
{"workload":"fanout-plain","label":"p10k","readers":10000,"rate":2,"lost":0,"server_cpu_s":3.5,"latency":{"p50_ms":9,"p99_ms":80}}
{"workload":"conns","label":"idle","rss_per_conn_bytes":16000,"errors":0}
{"workload":"floor","label":"floor-1k","readers":1000,"latency":{"p50_ms":1,"p99_ms":7}}
{"workload":"floor","label":"floor-10k","readers":10000,"latency":{"p50_ms":8,"p99_ms":70}}
`)
	runs, err := ReadRuns(in)
	if err != nil || len(runs) != 8 {
		t.Fatalf("ReadRuns = %d runs, %v", len(runs), err)
	}
	var out strings.Builder
	WriteTable(&out, runs)
	table := out.String()
	for _, want := range []string{"| f1k | fanout | 3 |", "lost 2", "deliveries_per_cpu_s 2", "latency.p99_ms 20", "| idle | conns | 1 |", "rss_per_conn_bytes 16000",
		"| p10k | fanout-plain | 1 | readers 10000,", "server_cpu_s 3.5",
		"| floor-10k | floor | 1 | readers 10000, latency.p50_ms 8"} {
		if !strings.Contains(table, want) {
			t.Errorf("the table lacks %q:\n%s", want, table)
		}
	}
	svg := string(LatencyChart(runs))
	if !strings.HasPrefix(svg, "<svg") || strings.Count(svg, "<polyline") != 3 || strings.Count(svg, ">10000<") != 1 ||
		!strings.Contains(svg, "stroke-dasharray") {
		t.Errorf("chart:\n%s", svg)
	}
}

// The floor workload needs no server: every write reaches every reader,
// and each delivery has a latency.
func TestFloorDeliversEverything(t *testing.T) {
	res, err := Floor(context.Background(), Options{Timeout: time.Minute}, FloorConfig{Readers: 50, Msgs: 5, Rate: 100, Size: 300})
	if err != nil {
		t.Fatal(err)
	}
	if res.Expected != 250 || res.Delivered != 250 || res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 {
		t.Errorf("floor: %+v", res)
	}
	if _, err := Floor(context.Background(), Options{}, FloorConfig{Readers: 1 << 20, Msgs: 1, Rate: 1}); err == nil || !strings.Contains(err.Error(), "open files") {
		t.Errorf("a million connections: %v, want the open files limit named", err)
	}
}

// sendBody is valid JSON with the values given; replyID reads the id of a
// real reply and refuses what is not one.
func TestSendBodyAndReplyID(t *testing.T) {
	body := sendBody("user:7", "0 12 1763800000123456789 quote\" back\\ ünï", "b1-2-3")
	var got map[string]string
	if err := json.Unmarshal(body, &got); err != nil || got["to"] != "user:7" || got["cid"] != "b1-2-3" ||
		got["text"] != "0 12 1763800000123456789 quote\" back\\ ünï" || len(got) != 3 {
		t.Errorf("sendBody = %s (%v, %v)", body, got, err)
	}
	if body := sendBody("room:lobby", "x", ""); string(body) != `{"to":"room:lobby","text":"x"}` {
		t.Errorf("sendBody without cid = %s", body)
	}
	for body, want := range map[string]int64{`{"id":1042,"ts":1,"cid":"c","conv":"user:7"}`: 1042, `{"ts":1,"id":7}`: 7} {
		if id, ok := replyID([]byte(body)); !ok || id != want {
			t.Errorf("replyID(%s) = %d, %v; want %d", body, id, ok, want)
		}
	}
	for _, body := range []string{`{}`, `{"id":"x"}`, `{"error":{"code":"bad_request"}}`, `{"id":`} {
		if id, ok := replyID([]byte(body)); ok {
			t.Errorf("replyID(%s) = %d, want none", body, id)
		}
	}
}

// bench disk appends and syncs at the rate asked, leaves no file behind,
// and refuses what it cannot do.
func TestDiskProbe(t *testing.T) {
	dir := t.TempDir()
	start := time.Now()
	res, err := Disk(context.Background(), Options{Timeout: time.Minute}, DiskConfig{Dir: dir, N: 20, Rate: 100, Size: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 190*time.Millisecond {
		t.Errorf("20 appends at 100 a second took %s", took)
	}
	if res.Workload != "disk" || res.N != 20 || res.Latency.Max < res.Latency.P50 {
		t.Errorf("disk: %+v", res)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the probe left %d files behind", len(left))
	}
	if _, err := Disk(context.Background(), Options{Timeout: time.Minute}, DiskConfig{Dir: filepath.Join(dir, "missing"), N: 1, Rate: 1, Size: 1}); err == nil {
		t.Error("a missing folder was probed")
	}
	if _, err := Disk(context.Background(), Options{Timeout: time.Minute}, DiskConfig{Dir: dir, N: 0, Rate: 1, Size: 1}); err == nil {
		t.Error("-n 0 was accepted")
	}
}

func TestParseURLs(t *testing.T) {
	got, err := ParseURLs(" http://127.0.0.1:20461, ws://localhost:20462/ws ,ws://127.0.0.1:20463/chat")
	want := []string{"ws://127.0.0.1:20461/ws", "ws://localhost:20462/ws", "ws://127.0.0.1:20463/chat"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("ParseURLs = %q, %v; want %q", got, err, want)
	}
	if got, err := ParseURLs(""); err != nil || !slices.Equal(got, []string{defaultURL}) {
		t.Fatalf("ParseURLs(\"\") = %q, %v", got, err)
	}
	for _, bad := range []string{"ws://127.0.0.1:1/ws,", "ws://127.0.0.1:1/ws,,ws://127.0.0.1:2/ws", "ws://127.0.0.1:1,http://127.0.0.1:1/ws",
		"ws://127.0.0.1:1/ws,ws://192.0.2.1:2/ws", "ws://127.0.0.1:1/ws?sid=x", "ftp://127.0.0.1/"} {
		if _, err := ParseURLs(bad); err == nil {
			t.Errorf("ParseURLs(%q) accepted", bad)
		}
	}
}

func TestNodeTakesTheURLsInTurn(t *testing.T) {
	o := Options{URL: "ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws,ws://127.0.0.1:3/ws"}
	if err := o.Check(); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for slot := range 300 {
		count[o.Node(slot)]++
		// The two parties of a pair (slots 2p and 2p+1) are on different nodes.
		if slot%2 == 1 && o.Node(slot) == o.Node(slot-1) {
			t.Fatalf("slots %d and %d share %s", slot-1, slot, o.Node(slot))
		}
	}
	if len(count) != 3 || count["ws://127.0.0.1:1/ws"] != 100 || count["ws://127.0.0.1:3/ws"] != 100 {
		t.Fatalf("300 slots over 3 nodes: %v", count)
	}
	if err := o.Check(); err != nil || len(o.URLs) != 3 {
		t.Fatalf("a second Check: %v, %q", err, o.URLs)
	}
	one := Options{URL: "http://127.0.0.1:20461"}
	if err := one.Check(); err != nil || one.Node(7) != "ws://127.0.0.1:20461/ws" || one.URL != "ws://127.0.0.1:20461/ws" {
		t.Fatalf("one URL: %v, %s, %s", err, one.Node(7), one.URL)
	}
}

func TestParsePIDs(t *testing.T) {
	if got, err := ParsePIDs(" 12,7 , 3"); err != nil || !slices.Equal(got, []int{12, 7, 3}) {
		t.Fatalf("ParsePIDs = %v, %v", got, err)
	}
	if got, err := ParsePIDs(""); err != nil || len(got) != 0 {
		t.Fatalf("ParsePIDs(\"\") = %v, %v", got, err)
	}
	for _, bad := range []string{"x", "0", "-3", "5,5", "1,2x"} {
		if _, err := ParsePIDs(bad); err == nil {
			t.Errorf("ParsePIDs(%q) accepted", bad)
		}
	}
}

// Several processes' figures are their sums, each with its children.
func TestProcessFiguresSumsProcessesAndTheirChildren(t *testing.T) {
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Skip("no sleep:", err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	self, err := ProcessFigures(os.Getpid())()
	if err != nil {
		t.Fatal(err)
	}
	if self.Processes != 2 || self.RSSBytes == 0 || self.CPUSeconds < 0 {
		t.Fatalf("this process and its child: %+v", self)
	}
	alone, err := ProcessFigures(child.Process.Pid)()
	if err != nil || alone.Processes != 1 || alone.RSSBytes == 0 {
		t.Fatalf("the child alone: %+v, %v", alone, err)
	}
	// Named again below its parent, the child counts once.
	both, err := ProcessFigures(os.Getpid(), child.Process.Pid)()
	if err != nil || both.Processes != 2 || both.RSSBytes < self.RSSBytes {
		t.Fatalf("parent and child named: %+v, %v", both, err)
	}
}

func TestFlagsWantPIDsForSeveralNodes(t *testing.T) {
	f := newFlags("conns", io.Discard)
	_, err := f.parse([]string{"-url", "ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws"})
	if err == nil || !strings.Contains(err.Error(), "-pid") {
		t.Fatalf("two nodes without -pid: %v; want an error asking for -pid", err)
	}
	f = newFlags("conns", io.Discard)
	o, err := f.parse([]string{"-url", "ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws", "-pid", strconv.Itoa(os.Getpid())})
	if err != nil || len(o.URLs) != 2 || o.Server == nil {
		t.Fatalf("two nodes with -pid: %+v, %v", o, err)
	}
	if fig, err := o.Server(); err != nil || fig.Processes != 1 {
		t.Fatalf("figures of -pid: %+v, %v", fig, err)
	}
	f = newFlags("conns", io.Discard)
	if _, err := f.parse([]string{"-pid", "1,x"}); err == nil {
		t.Fatal("-pid 1,x accepted")
	}
}
