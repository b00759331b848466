#!/usr/bin/env bash
# Measures the several-nodes budgets (README, Running several nodes) on
# loopback: PostgreSQL and Redis of its own (scripts/services.sh, on ports
# and in a folder of this script's), then one node on PostgreSQL and
# Redis, then three, each workload RUNS times (default 3) on freshly
# started nodes, and prints the medians with the ratios the budgets ask
# for. One node on the embedded SQLite runs too, for reference.
#
#   scripts/cluster-budgets.sh                # everything, about 15 minutes
#   RUNS=1 ONLY=sqlite scripts/cluster-budgets.sh
#   RUNS=1 SMALL=1 scripts/cluster-budgets.sh # every path, small sizes
#
# PROFILE=S takes a CPU profile of every node for S seconds during each
# run (3 s in; keep S below the run's length), into
# $BENCH_DIR/cpu-CONFIG-WORKLOAD-nodeK.pprof (go tool pprof -top FILE).
#
# ONLY picks configurations (sqlite, pg1, pg3) and workloads (pairs,
# latency, full, presence) by substring: ONLY="pg3 pairs". Results (one
# JSON line per run) go to $OUT (default runtime/cluster-bench/results.jsonl).
# Everything is stopped and cleaned up however the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
ONLY=${ONLY:-}
BENCH_DIR=${BENCH_DIR:-runtime/cluster-bench}
OUT=${OUT:-$BENCH_DIR/results.jsonl}
PG_PORT=${PG_PORT:-55532}
REDIS_PORT=${REDIS_PORT:-56479}
BASE_PORT=${BASE_PORT:-29700} # node k listens on BASE_PORT+10k (HTTP), +1 (TCP), +2 (UDP)
SRC=127.0.0.2-127.0.0.9
STEP_TIMEOUT=${STEP_TIMEOUT:-5m} # the bound on any one bench run

# The workloads' sizes: the issue's, or SMALL=1 for a quick pass over
# every path.
if [[ -n ${SMALL:-} ]]; then
	PAIRS=${PAIRS:-10} PAIRS_FOR=${PAIRS_FOR:-2s} READERS=${READERS:-100} LAT_MSGS=${LAT_MSGS:-40} FULL_MSGS=${FULL_MSGS:-1000}
	WATCHERS=${WATCHERS:-50} JOINERS=${JOINERS:-100} WITHIN=${WITHIN:-2s}
else
	PAIRS=${PAIRS:-100} PAIRS_FOR=${PAIRS_FOR:-20s} READERS=${READERS:-1000} LAT_MSGS=${LAT_MSGS:-300} FULL_MSGS=${FULL_MSGS:-20000}
	WATCHERS=${WATCHERS:-1000} JOINERS=${JOINERS:-2000} WITHIN=${WITHIN:-20s}
fi

command -v jq >/dev/null || { echo "cluster-budgets: needs jq (apt-get install jq)" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd) # PostgreSQL's socket folder must be absolute
: >"$OUT"
SERVICES=$BENCH_DIR/services
export DCE_SERVER_HOST=127.0.0.1
# The per-user and per-address limits would throttle the load tool; the
# bench users' passwords are hashed cheaply (no workload here measures
# logins). Everything else is the default configuration.
export DCE_LIMITS_MESSAGES_PER_SECOND=1000000 DCE_LIMITS_MESSAGE_BURST=1000000
export DCE_LIMITS_REGISTRATIONS_PER_ADDRESS_HOUR=1000000
export DCE_LIMITS_CONNECTS_PER_ADDRESS_SECOND=1000000 DCE_LIMITS_CONNECT_BURST_PER_ADDRESS=1000000
export DCE_AUTH_ARGON_MEMORY_KIB=1024 DCE_AUTH_ARGON_TIME=1

./dce help >/dev/null # builds runtime/bin/dce when the sources changed
DCE=runtime/bin/dce

nodes=0 # nodes running now
node_dir() { echo "$BENCH_DIR/node$1"; }
stop_nodes() {
	local k
	for ((k = 1; k <= nodes; k++)); do
		DCE_SERVER_RUNTIME_DIR=$(node_dir $k) "$DCE" websocket stop >/dev/null 2>&1 || true
	done
	nodes=0
}
services_up=
cleanup() {
	stop_nodes
	[[ -z $services_up ]] || SERVICES_PG_PORT=$PG_PORT SERVICES_REDIS_PORT=$REDIS_PORT scripts/services.sh stop "$SERVICES" || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

want_config() { [[ -z $ONLY || $ONLY == *"$1"* || ! $ONLY =~ (sqlite|pg1|pg3) ]]; }
want_load() { [[ -z $ONLY || $ONLY == *"$1"* || ! $ONLY =~ (pairs|latency|full|presence) ]]; }

psql_q() { psql -h 127.0.0.1 -p "$PG_PORT" -U dce -d "$1" -qtAX -c "$2"; }

# start_nodes N ENGINE: N nodes (sqlite: one, its own file; postgres: the
# configuration's database and Redis prefix), and sets URLS and PIDS.
start_nodes() {
	local n=$1 engine=$2 k port pid
	URLS= PIDS=
	for ((k = 1; k <= n; k++)); do
		port=$((BASE_PORT + 10 * k))
		local -a env=(DCE_SERVER_RUNTIME_DIR="$(node_dir $k)" DCE_SERVER_PORT=$port DCE_SERVER_TCP_PORT=$((port + 1))
			DCE_SERVER_UDP_PORT=$((port + 2)) DCE_SERVER_NODE=node$k)
		[[ -z ${PROFILE:-} ]] || env+=(DCE_SERVER_PPROF_ADDR=127.0.0.1:$((port + 5)))
		if [[ $engine == postgres ]]; then
			env+=(DCE_STORE_DRIVER=postgres DCE_STORE_DSN="$DSN" DCE_REDIS_URL="$DCE_TEST_REDIS" DCE_REDIS_PREFIX="$PREFIX")
		else
			env+=(DCE_STORE_DRIVER=sqlite DCE_STORE_PATH="$(node_dir $k)/dce.db")
		fi
		mkdir -p "$(node_dir $k)"
		if ! env "${env[@]}" "$DCE" websocket start -daemon >/dev/null; then
			echo "cluster-budgets: node$k did not start ($engine); its log: $(node_dir $k)/logs/dce.log" >&2
			return 1
		fi
		nodes=$k
		pid=
		for _ in $(seq 100); do
			pid=$(DCE_SERVER_RUNTIME_DIR=$(node_dir $k) "$DCE" websocket status 2>/dev/null | jq -r .pid) && break
			sleep 0.1
		done
		[[ -n $pid ]] || { echo "cluster-budgets: node$k does not answer status" >&2; return 1; }
		URLS+=${URLS:+,}ws://127.0.0.1:$port/ws
		PIDS+=${PIDS:+,}$pid
	done
	if [[ $engine == postgres ]]; then # the whole server's CPU: the engines' too
		PIDS+=,$(cat "$SERVICES/redis.pid"),$(head -1 "$SERVICES/pg/postmaster.pid")
	fi
}

# bench CONFIG LABEL ARGS...: one run of dce bench over the running nodes.
bench() {
	local config=$1 label=$2
	shift 2
	echo "cluster-budgets: $config/$label: dce bench $* ($nodes node(s))" >&2
	local k
	if [[ -n ${PROFILE:-} ]]; then # a CPU profile of each node, from 3 s in, for PROFILE seconds
		for ((k = 1; k <= nodes; k++)); do
			(sleep 3 && curl -sf -o "$BENCH_DIR/cpu-$config-$label-node$k.pprof" \
				"http://127.0.0.1:$((BASE_PORT + 10 * k + 5))/debug/pprof/profile?seconds=$PROFILE" || true) &
		done
	fi
	timeout -s INT "$STEP_TIMEOUT" "$DCE" bench "$@" -url "$URLS" -pid "$PIDS" -src $SRC -logins 16 \
		-sessions "$BENCH_DIR/sessions-$config" -timeout "$STEP_TIMEOUT" -json -label "$config/$label" | tail -1 | tee -a "$OUT"
	[[ -z ${PROFILE:-} ]] || wait
}

# workloads CONFIG N ENGINE: every workload, each on freshly started nodes.
workloads() {
	local config=$1 n=$2 engine=$3
	local -a runs=()
	want_load pairs && runs+=("pairs pairs -pairs $PAIRS -duration $PAIRS_FOR")
	want_load latency && runs+=("latency fanout -n $READERS -pubs 2 -msgs $LAT_MSGS -rate 20")
	want_load full && runs+=("full fanout -n $READERS -pubs 2 -msgs $FULL_MSGS")
	# Two sizes of arrivals: linear growth is the same bytes per joiner.
	want_load presence && runs+=("presence-half presence -watchers $WATCHERS -n $((JOINERS / 2)) -within $WITHIN"
		"presence presence -watchers $WATCHERS -n $JOINERS -within $WITHIN")
	local spec
	for spec in "${runs[@]}"; do
		stop_nodes
		start_nodes "$n" "$engine" || return 1
		local label=${spec%% *}
		if [[ $label == full && $engine == postgres ]]; then
			# What Redis answers in while the nodes push through it.
			(timeout -s INT 20 redis-cli -p "$REDIS_PORT" --latency-history -i 5 >"$BENCH_DIR/redis-latency-$config.txt" 2>&1 || true) &
			# shellcheck disable=SC2086
			bench "$config" ${spec} || true
			wait
			# Without a terminal, redis-cli prints "min max avg samples" (ms).
			echo "cluster-budgets: $config: redis-cli --latency while full-speed fan-out ran: min max avg (ms), samples:" >&2
			tr '\r' '\n' <"$BENCH_DIR/redis-latency-$config.txt" | grep -aE '^[0-9.]+ [0-9.]+ [0-9.]+ [0-9]+' | tail -1 | sed 's/^/  /' >&2 || true
		else
			# shellcheck disable=SC2086
			bench "$config" ${spec} || true
		fi
	done
	stop_nodes
}

# top_statements DB: what PostgreSQL spent its time on.
top_statements() {
	echo "cluster-budgets: $1: top statements by total time (pg_stat_statements):" >&2
	psql_q "$1" "SELECT round(total_exec_time)::text || ' ms', calls, round(mean_exec_time::numeric, 3)::text || ' ms mean', left(regexp_replace(query, '\s+', ' ', 'g'), 100)
		FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		ORDER BY total_exec_time DESC LIMIT 8" | sed 's/^/  /' >&2 || true
}

if want_config pg1 || want_config pg3; then
	SERVICES_PG_PORT=$PG_PORT SERVICES_REDIS_PORT=$REDIS_PORT scripts/services.sh stop "$SERVICES" >/dev/null 2>&1 || true
	eval "$(SERVICES_PG_PORT=$PG_PORT SERVICES_REDIS_PORT=$REDIS_PORT scripts/services.sh start "$SERVICES")"
	services_up=1
fi

for i in $(seq "$RUNS"); do
	if want_config sqlite; then
		rm -rf "$(node_dir 1)/dce.db"* # a fresh store each pass; the sessions file is dropped with it
		rm -f "$BENCH_DIR/sessions-sqlite"
		workloads sqlite 1 sqlite || echo "cluster-budgets: sqlite: could not run" >&2
	fi
	for n in 1 3; do
		want_config pg$n || continue
		config=pg$n DB=dce_bench_$n PREFIX=dce-bench-$n-$i:
		psql_q dce "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
		psql_q dce "CREATE DATABASE $DB OWNER dce" >/dev/null
		psql_q "$DB" "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
		rm -f "$BENCH_DIR/sessions-$config"
		DSN="postgres://dce@127.0.0.1:$PG_PORT/$DB?sslmode=disable"
		workloads "$config" "$n" postgres || echo "cluster-budgets: $config: the nodes did not start on PostgreSQL and Redis" >&2
		[[ $i != "$RUNS" ]] || top_statements "$DB"
	done
done

echo
"$DCE" bench report -in "$OUT"
echo

# The budgets, from the medians.
median() { # label, jq path: the median over that label's runs ("" if none)
	jq -rs --arg l "$1" "[.[] | select(.label == \$l) | $2 | numbers] | sort |
		if length == 0 then \"\" else (if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end) end" "$OUT"
}
ratio() { # a, b, jq expression of a and b
	[[ -n $1 && -n $2 ]] && jq -rn --argjson a "$1" --argjson b "$2" "$3" || echo "n/a"
}
echo "| budget | figure | holds |"
echo "|---|---|---|"
rate=$(median pg3/pairs .acked_per_s) missing=$(median pg3/pairs .missing_in_store)
echo "| pairs, $PAIRS pairs, 3 nodes: >= 20,000 acked/s, every one stored | $(ratio "$rate" "${missing:-0}" '"\($a | round)/s, \($b) missing"') | $(ratio "$rate" "${missing:-1}" 'if $a >= 20000 and $b == 0 then "yes" else "no" end') |"
rate1=$(median pg1/pairs .acked_per_s) rates=$(median sqlite/pairs .acked_per_s)
echo "| (pairs, 1 node on PostgreSQL; 1 node on SQLite) | $(ratio "${rate1:-null}" "${rates:-null}" '"\($a // "n/a" | if type == "number" then round else . end); \($b // "n/a" | if type == "number" then round else . end) acked/s"') | |"
p3=$(median pg3/latency .latency.p99_ms) p1=$(median pg1/latency .latency.p99_ms)
echo "| lobby at 20/s, $READERS readers: p99 over 3 nodes <= 1 node + 50 ms | $(ratio "$p3" "$p1" '"\($a) ms vs \($b) ms (+\(($a - $b) * 100 | round / 100) ms)"') | $(ratio "$p3" "$p1" 'if $a <= $b + 50 then "yes" else "no" end') |"
c3=$(median pg3/full .deliveries_per_cpu_s) c1=$(median pg1/full .deliveries_per_cpu_s)
echo "| full-speed fan-out: CPU per delivery, 3 nodes / 1 node (nodes, Redis, PostgreSQL summed) <= 1.5 | $(ratio "$c1" "$c3" '"\(($a / $b) * 100 | round / 100)x (\($b | round) vs \($a | round) deliveries per CPU second)"') | $(ratio "$c1" "$c3" 'if $a / $b <= 1.5 then "yes" else "no" end') |"
bh=$(median pg3/presence-half .bytes_per_joiner) bf=$(median pg3/presence .bytes_per_joiner)
exact=$(median pg3/presence .lists_exact) watchers=$(median pg3/presence .watchers)
echo "| presence, $JOINERS arrive over 3 nodes, $WATCHERS watch: bytes linear, every list exact | $(ratio "$bf" "$bh" '"\($a | round) vs \($b | round) bytes per joiner (\(($a / $b) * 100 | round / 100)x)"'), ${exact:-n/a} of ${watchers:-n/a} lists exact | $(ratio "$bf" "$bh" 'if ($a / $b) <= 1.1 and ($a / $b) >= 0.9 then "linear" else "not linear" end'), $([[ -n $exact && $exact == "$watchers" ]] && echo exact || echo "not exact") |"
