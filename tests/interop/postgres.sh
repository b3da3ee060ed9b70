#!/usr/bin/env bash
# Runs the storage suite and an end-to-end call against a real PostgreSQL: a private
# cluster on a free loopback port in a temp dir, stopped and removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PGBIN=/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -V | tail -1)/bin
PGDIR=$(mktemp -d /tmp/comm-pg.XXXXXX)
PGPORT=$(( 40000 + RANDOM % 20000 ))
chown postgres "$PGDIR"
runuser -u postgres -- "$PGBIN/initdb" -D "$PGDIR/data" -A trust -U postgres >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
  -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1" start >/dev/null
trap 'runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast stop >/dev/null; rm -rf "$PGDIR"' EXIT
runuser -u postgres -- "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" comm_test

export COMM_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PGPORT/comm_test"
cargo test -p comm-server --lib store
cargo test -p e2e --test signalling postgres
