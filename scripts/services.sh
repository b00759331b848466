#!/usr/bin/env bash
# Throwaway PostgreSQL and Redis servers for the tests, on loopback ports,
# from Debian's packages: `scripts/services.sh start DIR` makes and starts
# them with their data under DIR and prints the variables the tests read
# (DCE_TEST_POSTGRES, DCE_TEST_REDIS); `scripts/services.sh stop DIR` stops
# them (ports SERVICES_PG_PORT, SERVICES_REDIS_PORT; 55432 and 56379 by
# default). PostgreSQL runs as the postgres user (it refuses to run as root);
# the role dce is a superuser, trusted on loopback only.
set -euo pipefail
cmd=${1:?usage: services.sh start|stop DIR} dir=${2:?usage: services.sh start|stop DIR}
pg_port=${SERVICES_PG_PORT:-55432} redis_port=${SERVICES_REDIS_PORT:-56379}
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case $cmd in
start)
  [ -x "$pgbin/initdb" ] || { echo "services: no PostgreSQL server (apt-get install postgresql)" >&2; exit 1; }
  command -v redis-server >/dev/null || { echo "services: no redis-server (apt-get install redis-server)" >&2; exit 1; }
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  if [ ! -s "$dir/pg/PG_VERSION" ]; then
    as_pg "$pgbin/initdb" -D "$dir/pg" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  as_pg "$pgbin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$pg_port -c unix_socket_directories=$dir -c max_connections=400 -c shared_preload_libraries=pg_stat_statements -c fsync=on -c synchronous_commit=on" start >/dev/null ||
    { cat "$dir/pg.log" >&2; exit 1; }
  "$pgbin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -qtA -c \
    "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dce') THEN CREATE ROLE dce LOGIN SUPERUSER; END IF; END \$\$;" >/dev/null
  "$pgbin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -qtA -c "SELECT 1 FROM pg_database WHERE datname = 'dce'" | grep -q 1 ||
    "$pgbin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -q -c "CREATE DATABASE dce OWNER dce" >/dev/null
  redis-server --bind 127.0.0.1 --port "$redis_port" --daemonize yes --dir "$dir" --pidfile "$dir/redis.pid" \
    --logfile "$dir/redis.log" --save '' --appendonly no >/dev/null
  for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$redis_port" ping >/dev/null || { cat "$dir/redis.log" >&2; exit 1; }
  echo "export DCE_TEST_POSTGRES=postgres://dce@127.0.0.1:$pg_port/dce?sslmode=disable"
  echo "export DCE_TEST_REDIS=redis://127.0.0.1:$redis_port/0"
  ;;
stop)
  if [ -f "$dir/redis.pid" ]; then redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || kill "$(cat "$dir/redis.pid")" 2>/dev/null || true; fi
  if [ -s "$dir/pg/postmaster.pid" ]; then as_pg "$pgbin/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null 2>&1 || true; fi
  ;;
*) echo "usage: services.sh start|stop DIR" >&2; exit 2 ;;
esac
