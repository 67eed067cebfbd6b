#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis accept connections on loopback, starting
# them (and installing them from Debian's packages when absent), and that
# PgBouncer is installed: tests start throwaway poolers of their own in front
# of PostgreSQL (internal/localstack/testenv). Used by `make test` and `make dev`; does
# nothing when all of it is already there.
set -euo pipefail

pg_up()    { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
as_root()  { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if ! pg_up; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "installing PostgreSQL"; apt_install postgresql
  fi
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  echo "starting PostgreSQL $ver"
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 50); do pg_up && break; sleep 0.2; done
  pg_up || { echo "PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1; }
fi
# Tests connect as postgres over TCP without a password (trust on loopback,
# as on the project's machines); check it once to fail with a clear line.
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
  echo "PostgreSQL runs but user postgres cannot log in on 127.0.0.1 without a password;" >&2
  echo "set TEST_DATABASE_URL to an admin URL (e.g. postgres://user:pass@127.0.0.1:5432/postgres)" >&2
  [ -n "${TEST_DATABASE_URL:-}" ] || exit 1
fi

if ! redis_up; then
  command -v redis-server >/dev/null || { echo "installing Redis"; apt_install redis-server; }
  echo "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do redis_up && break; sleep 0.2; done
  redis_up || { echo "Redis did not start on 127.0.0.1:6379" >&2; exit 1; }
fi

# Only the program is needed: tests run their own instances, not the
# package's service.
if ! command -v pgbouncer >/dev/null && ! [ -x /usr/sbin/pgbouncer ]; then
  echo "installing PgBouncer"; apt_install pgbouncer
fi
