# syntax=docker/dockerfile:1
#
# The instance image: PostgreSQL from the official Debian-based image plus
# the `pgcluster` binary, whose `pgcluster agent` is the container's
# entrypoint in the StatefulSet (it runs initdb / pg_basebackup and
# supervises postgres). Default image of spec.postgres.image:
# ghcr.io/pgcluster/postgres:<major>.
#
# NOT BUILT IN CI: our CI machines have no Docker engine, so this file has
# never been built there. Build it where Docker/Buildah runs, from the
# repository root, once per PostgreSQL major version:
#
#   docker build -f docker/postgres.Dockerfile --build-arg PG_MAJOR=17 -t ghcr.io/pgcluster/postgres:17 .
#
# The official image's `postgres` user is uid/gid 999, which the
# StatefulSet's securityContext (runAsUser/fsGroup 999) expects. Its PATH
# already contains /usr/lib/postgresql/$PG_MAJOR/bin, where the agent finds
# initdb, pg_ctl, pg_basebackup and pg_rewind.

ARG PG_MAJOR=17

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p pgcluster-cli --bin pgcluster \
 && install -D -m 0755 target/release/pgcluster /out/pgcluster

FROM docker.io/library/postgres:${PG_MAJOR}-bookworm
COPY --from=build /out/pgcluster /usr/local/bin/pgcluster
# The agent replaces docker-entrypoint.sh: it owns initdb and startup.
ENTRYPOINT []
USER 999:999
EXPOSE 5432 8008
CMD ["pgcluster", "agent"]
