# syntax=docker/dockerfile:1
#
# The pgcluster controller image (Deployment in kubernetes/controller/).
#
# NOT BUILT IN CI: our CI machines have no Docker engine, so this file has
# never been built there. Build it where Docker/Buildah runs, from the
# repository root:
#
#   docker build -f docker/controller.Dockerfile -t ghcr.io/pgcluster/pgcluster-controller:0.1.0 .
#
# TLS to the API server uses rustls (ring), so the runtime image needs no
# OpenSSL: distroless "cc" (glibc + libgcc) is enough. It runs as the
# distroless `nonroot` user, uid/gid 65532, matching runAsUser in
# kubernetes/controller/deployment.yaml.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p pgcluster-cli --bin pgcluster-controller \
 && install -D -m 0755 target/release/pgcluster-controller /out/pgcluster-controller

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/pgcluster-controller /usr/local/bin/pgcluster-controller
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/pgcluster-controller"]
