#!/usr/bin/env bash
# The container image's test (.ci/run calls it): builds the static binary and
# app/Containerfile's image, runs one node in a container publishing on
# loopback only, waits for it through the host's control socket (the runtime
# folder is a host folder mounted on /runtime), chats through it with the
# load tool (dce bench fanout over a real WebSocket: nothing lost, nothing
# duplicated), then removes everything it made. Where podman cannot run a
# container here (not installed, no runc, not root, limits the runtime cannot
# set) it prints "container: SKIP: <why>" and exits 0; where it can and the
# chat fails, it exits 1. Every step has a timeout; a trap cleans up on
# every exit path.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF=$PWD/deploy/containers.conf # runc and explicit ulimits (deploy/containers.conf)

skip() { echo "container: SKIP: $*"; exit 0; }
fail() { echo "container: FAIL: $*" >&2; exit 1; }

command -v podman >/dev/null 2>&1 || skip "podman is not installed (apt-get install podman runc)"
command -v runc >/dev/null 2>&1 || skip "runc is not installed (apt-get install runc); deploy/containers.conf uses it because crun cannot set RLIMIT_NOFILE on hosts like this one"
[ "$(id -u)" = 0 ] || skip "not root: this test runs rootful podman so that the host reaches the container's control socket"
command -v go >/dev/null 2>&1 || fail "go is needed to build the binary"

tag=dce-test-$$ name=dce-test-$$
dir=$(mktemp -d)
cleanup() {
  timeout 30 podman rm -f -t 5 "$name" >/dev/null 2>&1 || true
  timeout 30 podman rmi -f "localhost/$tag" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# The image's binary is the one the README builds.
timeout 300 env CGO_ENABLED=0 go build -trimpath -o runtime/bin/dce ./app || fail "go build"
timeout 60 go build -o "$dir/dce" ./app || fail "go build (the host's client)"
timeout 300 podman build -q -f app/Containerfile -t "$tag" . >"$dir/build.log" 2>&1 ||
  { cat "$dir/build.log" >&2; fail "podman build"; }
size=$(podman image inspect --format '{{.Size}}' "localhost/$tag")
echo "container: image $tag built, $((size / 1000000)) MB"

# Can this host run a container at all? A FROM-scratch image has no shell:
# the binary's own help is the probe, first without a network (the runtime:
# limits, cgroups), then with a port published on loopback (the network
# stack). podman's exit codes tell the host's failures from the image's: 125
# is podman's error and 126 the runtime's (the host: skip); 127 is a missing
# executable, the image's /dce (fail) or one of podman's helpers such as
# netavark (the host: skip); anything else comes from the binary (fail).
probe() {
  local out rc=0
  out=$(timeout 60 podman run --rm "$@" "localhost/$tag" help 2>&1) || rc=$?
  case $rc in
  0) ;;
  127) case $out in
    *"invoke a command that was not found"* | *"executable file not found"*) echo "$out" >&2; fail "the image has no /dce" ;;
    *) skip "podman cannot start a container on this host ($*): $(echo "$out" | grep . | tail -1)" ;;
    esac ;;
  125 | 126) skip "podman cannot start a container on this host ($*): $(echo "$out" | grep . | tail -1)" ;;
  124) fail "podman run $* did not end within 60 s" ;;
  *) echo "$out" >&2; fail "the image's binary exited $rc for help ($*)" ;;
  esac
}
probe --network=none
probe -p 127.0.0.1::20461

mkdir -p "$dir/runtime"
run_log=$dir/run.log
# The bench's users register and send faster than the default limits allow.
if ! timeout 60 podman run -d --name "$name" -v "$dir/runtime:/runtime:U" -p "127.0.0.1::20461" \
  -e DCE_LIMITS_MESSAGES_PER_SECOND=1000000 -e DCE_LIMITS_MESSAGE_BURST=1000000 \
  -e DCE_LIMITS_REGISTRATIONS_PER_ADDRESS_HOUR=1000000 -e DCE_AUTH_ARGON_MEMORY_KIB=1024 -e DCE_AUTH_ARGON_TIME=1 \
  "localhost/$tag" >"$run_log" 2>&1; then
  cat "$run_log" >&2
  fail "podman run"
fi
# podman chose a free port on the host's loopback for the container's 20461.
hostport=$(timeout 10 podman port "$name" 20461/tcp | head -1) || fail "podman port"
case $hostport in 127.0.0.1:[0-9]*) port=${hostport#127.0.0.1:} ;; *) fail "published on '$hostport', not on loopback" ;; esac
export DCE_SERVER_RUNTIME_DIR=$dir/runtime # the host's client reaches the server through the volume's dce.sock
up=
for _ in $(seq 100); do
  if timeout 10 "$dir/dce" websocket status >"$dir/status.json" 2>/dev/null; then up=1; break; fi
  sleep 0.2
done
[ -n "$up" ] || { timeout 10 podman logs "$name" >&2 || true; fail "the server in the container did not answer on $dir/runtime/dce.sock within 20 s"; }
owner=$(stat -c %u "$dir/runtime/dce.sock")
[ "$owner" = 65532 ] || fail "the control socket belongs to uid $owner, not the image's user 65532"
timeout 10 curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null ||
  { command -v curl >/dev/null 2>&1 && fail "no HTTP answer on 127.0.0.1:$port"; }

result=$(timeout 150 "$dir/dce" bench fanout -url "ws://127.0.0.1:$port/ws" -n 20 -pubs 2 -msgs 200 -json -timeout 2m 2>"$dir/bench.err" | tail -1) || true
echo "container: bench fanout: $result"
for want in '"acked":200,' '"failed":0,' '"lost":0,' '"duplicated":0,'; do
  case $result in *"$want"*) ;; *) tail -5 "$dir/bench.err" >&2; timeout 10 podman logs --tail 20 "$name" >&2 || true; fail "bench fanout through the container: expected $want" ;; esac
done

# The host's stop through the socket ends the container's server gracefully.
timeout 30 "$dir/dce" websocket stop >/dev/null || fail "dce websocket stop through the volume's socket"
for _ in $(seq 50); do
  [ "$(podman inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" = false ] && break
  sleep 0.2
done
[ "$(podman inspect --format '{{.State.Running}} {{.State.ExitCode}}' "$name")" = "false 0" ] ||
  fail "the container did not exit 0 after dce websocket stop"
echo "container: ok (image $((size / 1000000)) MB; chat through 127.0.0.1:$port; status and stop from the host through the runtime volume)"
