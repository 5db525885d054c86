#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432, trust auth, database "test") and Redis (127.0.0.1:6379)
# answer. Servers already running there are used as they are; otherwise Debian's packages are
# installed when missing and started on loopback from a scratch data folder. Idempotent.
set -euo pipefail

PGPORT=5432
REDISPORT=6379
STATE=${FACEGATE_SERVICES_DIR:-/tmp/facegate-services}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() {
  for _ in $(seq 1 60); do listening "$1" && return 0; sleep 0.5; done
  echo "services.sh: nothing answers on port $1" >&2; return 1
}
need_pkg() {  # need_pkg COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/"$1" >/dev/null 2>&1 && return 0
  [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
SUDO_PG() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if listening $REDISPORT; then
  echo "redis: using the server on 127.0.0.1:$REDISPORT"
else
  need_pkg redis-server redis-server
  mkdir -p "$STATE/redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port $REDISPORT --save "" --appendonly no \
    --dir "$STATE/redis" --logfile "$STATE/redis/redis.log"
  wait_for $REDISPORT && echo "redis: started on 127.0.0.1:$REDISPORT"
fi

if listening $PGPORT; then
  echo "postgresql: using the server on 127.0.0.1:$PGPORT"
else
  need_pkg initdb postgresql
  BINDIR=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  DATA="$STATE/pgdata"
  if [ ! -s "$DATA/PG_VERSION" ]; then
    mkdir -p "$STATE" && rm -rf "$DATA" && mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown -R postgres "$STATE"
    SUDO_PG "$BINDIR/initdb" -D "$DATA" -U postgres --auth=trust >/dev/null
  fi
  mkdir -p "$STATE/run" && { [ "$(id -u)" != 0 ] || chown postgres "$STATE/run"; }
  SUDO_PG "$BINDIR/pg_ctl" -D "$DATA" -l "$STATE/postgres.log" -w \
    -o "-h 127.0.0.1 -p $PGPORT -k $STATE/run" start >/dev/null
  wait_for $PGPORT && echo "postgresql: started on 127.0.0.1:$PGPORT"
fi

# smbd serves the Samba shares of the estimator task's tests (tests/tasks/servers.py starts its own
# on a free port; none runs here). Installing needs root; without it those tests are skipped.
if [ "$(id -u)" = 0 ] && ! command -v smbd >/dev/null 2>&1 && [ ! -x /usr/sbin/smbd ]; then
  [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq; APT_UPDATED=1; }
  if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq samba >/dev/null; then
    echo "samba: installed (smbd for the tests)"
  else
    echo "samba: could not be installed (the Samba tests are skipped)"
  fi
fi

# RabbitMQ is optional: the RabbitMQ variants of tests/platform/test_redelivery.py run when one
# answers on 127.0.0.1:5672 (guest/guest) and are skipped otherwise; the platform's broker is Redis.
if listening 5672; then
  echo "rabbitmq: using the server on 127.0.0.1:5672 (RabbitMQ redelivery tests run)"
else
  echo "rabbitmq: none on 127.0.0.1:5672 (RabbitMQ redelivery tests are skipped)"
fi

# The suite works in database "test" (and makes its own per-worker databases beside it).
if ! psql -h 127.0.0.1 -p $PGPORT -U postgres -Atc "select 1 from pg_database where datname='test'" postgres 2>/dev/null | grep -q 1; then
  if command -v psql >/dev/null 2>&1; then
    psql -h 127.0.0.1 -p $PGPORT -U postgres -c "create database test" postgres >/dev/null
  fi
fi
