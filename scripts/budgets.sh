#!/usr/bin/env bash
# Runs every performance budget of the README's Performance section against
# a real server on loopback, RUNS times each (default 3), each run on a
# freshly started server, and prints the medians as a Markdown table.
#
#   scripts/budgets.sh                 # everything, about 20 minutes
#   RUNS=1 ONLY=fanout scripts/budgets.sh
#   ONLY=probe scripts/budgets.sh      # the lobby against the bare stack's probe
#   ONLY=group scripts/budgets.sh      # a 5,000-member group's fan-out against the lobby's
#
# Results (one JSON line per run) go to $OUT (default
# runtime/bench/results.jsonl). The latency chart (push latency against
# 100 to 10,000 readers at 2 messages/s, with the machine's floor) is drawn
# from its own runs, once, into $CHART (chart.jsonl) and $OUT_SVG. The
# server's data lives in a folder of its own under runtime/bench, so the
# benchmark never touches the normal runtime/.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
ONLY=${ONLY:-}
BENCH_DIR=${BENCH_DIR:-runtime/bench}
OUT=${OUT:-$BENCH_DIR/results.jsonl}
OUT_SVG=${OUT_SVG:-$BENCH_DIR/latency.svg}
CHART=${CHART:-$BENCH_DIR/chart.jsonl}
SRC=127.0.0.2-127.0.0.9

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd) # a relative or an absolute BENCH_DIR alike
export DCE_SERVER_RUNTIME_DIR=$BENCH_DIR/server
export DCE_SERVER_HOST=127.0.0.1
# The per-user rate limits would throttle the senders; everything else is
# the default configuration (store.synchronous = FULL).
export DCE_LIMITS_MESSAGES_PER_SECOND=1000000
export DCE_LIMITS_MESSAGE_BURST=1000000
export DCE_LIMITS_REGISTRATIONS_PER_ADDRESS_HOUR=1000000
export DCE_LIMITS_CONNECTS_PER_ADDRESS_SECOND=1000000
export DCE_LIMITS_CONNECT_BURST_PER_ADDRESS=1000000

# DCE=path/to/an/older/dce compares another build (with its own BENCH_DIR).
if [[ -z ${DCE:-} ]]; then
	./dce help >/dev/null # builds runtime/bin/dce when the sources changed
	DCE=runtime/bin/dce
fi

start() {
	"$@" "$DCE" websocket start -daemon >/dev/null
	for _ in $(seq 100); do
		"$DCE" websocket status >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "budgets: the server did not start" >&2
	exit 1
}

stop() { "$DCE" websocket stop >/dev/null 2>&1 || true; }
trap stop EXIT

want() { [[ -z $ONLY || $ONLY == *"$1"* ]]; }

run() { # label, bench arguments...: one run on a fresh server
	run_with "" "$@"
}

run_with() { # server setting (NAME=VALUE or ""), label, bench arguments...
	local setting=$1 label=$2
	shift 2
	stop
	if [[ -n $setting ]]; then start env "$setting"; else start; fi
	echo "budgets: $label: ${setting:+$setting }dce bench $*" >&2
	"$DCE" bench "$@" -json -label "$label" | tail -1 | tee -a "$OUT"
	stop
}

# The bench users, created once with cheap password hashing (the runs then
# resume their sessions; only `login` measures hashing).
if [[ ! -s $BENCH_DIR/server/bench-sessions ]]; then
	echo "budgets: creating the bench users" >&2
	stop
	start env DCE_AUTH_ARGON_MEMORY_KIB=1024 DCE_AUTH_ARGON_TIME=1
	"$DCE" bench conns -n 19000 -hold 1s -src $SRC -logins 16 -json >/dev/null
	"$DCE" bench fanout -n 10000 -pubs 2 -msgs 10 -src $SRC -logins 16 -json >/dev/null
	"$DCE" bench pairs -pairs 100 -duration 1s -verify=false -json >/dev/null
	"$DCE" bench presence -watchers 1000 -n 10 -within 1s -json >/dev/null
	stop
fi

for i in $(seq "$RUNS"); do
	want idle && run idle-19k conns -n 19000 -hold 30s -src $SRC -logins 16
	want fanout && run fanout-1k fanout -n 1000 -pubs 2 -msgs 20000 -size 64
	want fanout && run fanout-10k fanout -n 10000 -pubs 2 -msgs 2000 -size 64 -src $SRC -logins 16
	want latency && run latency-1k fanout -n 1000 -pubs 2 -msgs 300 -rate 20
	want latency && run latency-10k fanout -n 10000 -pubs 2 -msgs 30 -rate 2 -src $SRC -logins 16
	# The same with synchronous=NORMAL: on a disk whose fsync sometimes
	# stalls for hundreds of milliseconds, FULL puts the stall in the tail.
	want latency && run_with DCE_STORE_SYNCHRONOUS=NORMAL latency-1k-normal fanout -n 1000 -pubs 2 -msgs 300 -rate 20
	want latency && run_with DCE_STORE_SYNCHRONOUS=NORMAL latency-10k-normal fanout -n 10000 -pubs 2 -msgs 30 -rate 2 -src $SRC -logins 16
	# What this machine does at best for the same paced fan-outs, with no
	# server: a goroutine per loopback TCP write, read by a second process
	# on one core, as the load tool is. 9,900 as in the chart below.
	want latency && "$DCE" bench floor -n 1000 -msgs 300 -rate 20 -json -label floor-1k | tail -1 | tee -a "$OUT"
	want latency && "$DCE" bench floor -n 9900 -msgs 30 -rate 2 -src $SRC -json -label floor-9900 | tail -1 | tee -a "$OUT"
	# What this disk does at best for a commit of the 1,000-reader row:
	# with FULL, each message's push waits for its commit's fdatasync.
	want latency && "$DCE" bench disk -n 300 -rate 20 -json -label disk-20 | tail -1 | tee -a "$OUT"
	# A group's fan-out against the lobby's at the same size, run for run:
	# 5,000 members of one open group made for the run (Bus.Deliver with
	# a list of 5,000 users per message) and 5,000 lobby readers.
	want group && run lobby-5k fanout -n 5000 -pubs 2 -msgs 3000 -size 64 -src $SRC -logins 16
	want group && run group-5k fanout -n 5000 -pubs 2 -msgs 3000 -size 64 -src $SRC -logins 16 -group
	want pairs && run pairs-100 pairs -pairs 100 -duration 20s
	want login && run login-200 login -n 200 -c 4 -prefix "bench-login-$(date +%s)-$i"
	want presence && run presence-500 presence -watchers 1000 -n 500 -within 5s
	want presence && run presence-1000 presence -watchers 1000 -n 1000 -within 10s
	want presence && run presence-2000 presence -watchers 1000 -n 2000 -within 20s
done

# The bare stack's probe (../shared/bench/fiberprobe, when it is there):
# the same workloads against the leanest broadcast server on Fiber and
# contrib/websocket, alternating with the chat's lobby run for run, so
# that the two compare as ratios within one run of the machine.
PROBE_SRC=${PROBE_SRC:-../shared/bench/fiberprobe}
PROBE_ADDR=127.0.0.1:29471
probe_pid=
probe_stop() {
	if [[ -n $probe_pid ]]; then
		kill "$probe_pid" 2>/dev/null || true
		wait "$probe_pid" 2>/dev/null || true # its status is the signal's
		probe_pid=
	fi
}
trap 'stop; probe_stop' EXIT
probe() { # label, bench arguments...: one run against a freshly started probe
	local label=$1
	shift
	stop
	"$BENCH_DIR/fiberprobe" -addr $PROBE_ADDR &
	probe_pid=$!
	for _ in $(seq 100); do
		(exec 3<>/dev/tcp/127.0.0.1/29471) 2>/dev/null && break
		sleep 0.1
	done
	echo "budgets: $label: dce bench $* -plain (probe)" >&2
	"$DCE" bench "$@" -plain -pid "$probe_pid" -url ws://$PROBE_ADDR/ws -json -label "$label" | tail -1 | tee -a "$OUT"
	probe_stop
}
if want probe; then
	if [[ -d $PROBE_SRC ]]; then
		(cd "$PROBE_SRC" && go build -o "$BENCH_DIR/fiberprobe" .)
		for i in $(seq "$RUNS"); do
			run lobby-1k fanout -n 1000 -pubs 2 -msgs 20000 -size 64 -window 500
			probe probe-1k fanout -n 1000 -pubs 2 -msgs 20000 -size 64 -window 500
			run lobby-latency-1k fanout -n 1000 -pubs 2 -msgs 300 -rate 20
			probe probe-latency-1k fanout -n 1000 -pubs 2 -msgs 300 -rate 20
			run lobby-latency-10k fanout -n 10000 -pubs 2 -msgs 30 -rate 2 -src $SRC -logins 16
			probe probe-latency-10k fanout -n 10000 -pubs 2 -msgs 30 -rate 2 -src $SRC -logins 16
		done
	else
		echo "budgets: no probe at $PROBE_SRC: skipping the probe group" >&2
	fi
fi

if want chart; then
	: >"$CHART"
	for n in 100 1000 3000 10000; do
		OUT=$CHART run chart-$n fanout -n $n -pubs 2 -msgs 30 -rate 2 -src $SRC -logins 16 >/dev/null
		# 9,900: what `bench floor -procs 1` (both ends in one process)
		# fits in 20,000 open files, kept for comparison with older runs.
		"$DCE" bench floor -n $((n < 10000 ? n : 9900)) -msgs 30 -rate 2 -src $SRC -json -label floor-chart-$n | tail -1 >>"$CHART"
	done
	"$DCE" bench report -in "$CHART" -svg "$OUT_SVG" >/dev/null
fi

[[ -s $OUT ]] && "$DCE" bench report -in "$OUT"
echo "budgets: results in $OUT, chart in $OUT_SVG" >&2
