# PostgreSQL 15 from Debian's packages, for deploy/compose.yaml and deploy/swarm-stack.yaml where no
# public registry is reachable: deploy/docker/build.sh postgres (FROM the local base with
# postgresql-15, deploy/docker/local-base.sh). Anywhere else the public postgres:15 image serves.
ARG BASE_IMAGE=botfleet-local/postgres:bookworm
FROM ${BASE_IMAGE}
# The data directory exists, empty and the postgres user's, in the image: a new named volume
# mounted there starts as a copy of it, so initdb may use it without root.
RUN set -eu; \
    install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data; \
    rm -rf /var/lib/postgresql/15/main /etc/postgresql/15/main
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data \
    POSTGRES_PORT=5432 POSTGRES_LISTEN=127.0.0.1 POSTGRES_DB=botfleet
USER postgres
STOPSIGNAL SIGINT
HEALTHCHECK --interval=2s --timeout=3s --start-period=30s --retries=3 \
  CMD ["sh", "-c", "pg_isready -q -h 127.0.0.1 -p \"$POSTGRES_PORT\" -U postgres -d \"$POSTGRES_DB\""]
ENTRYPOINT ["sh", "/usr/local/bin/postgres-entrypoint.sh"]
