#!/bin/sh
# Initialise the data directory on first start (superuser postgres with POSTGRES_PASSWORD, a
# database POSTGRES_DB), then run PostgreSQL in the foreground on POSTGRES_LISTEN:POSTGRES_PORT.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgres: POSTGRES_PASSWORD must be set to initialise $PGDATA" >&2
    exit 2
  fi
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  # Password (SCRAM) for every TCP connection; the local socket is for the postgres user itself.
  initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" --auth-host=scram-sha-256 \
    --auth-local=peer --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  printf 'CREATE DATABASE "%s";\n' "$POSTGRES_DB" | postgres --single -D "$PGDATA" postgres >/dev/null
  echo "postgres: initialised $PGDATA with the database $POSTGRES_DB" >&2
fi
exec postgres -D "$PGDATA" -c listen_addresses="$POSTGRES_LISTEN" -c port="$POSTGRES_PORT" \
  -c unix_socket_directories=/tmp "$@"
