# syntax=docker/dockerfile:1
# skaffold-exporter container image: multi-stage, small, non-root.
#
#   docker build -t skaffold-exporter --build-arg REVISION=$(git rev-parse HEAD) .
#   docker run --rm -p 9464:9464 skaffold-exporter demo --listen 0.0.0.0:9464
#
# Build and runtime use the same Debian release so the binary's glibc matches.
# build.rs compiles the protos with protox: no protoc needed.
ARG DEBIAN_RELEASE=bookworm

FROM rust:1-${DEBIAN_RELEASE} AS build
# The git commit for skaffold_exporter_build_info{revision} (the build context has no
# .git): docker build --build-arg REVISION=$(git rev-parse HEAD) .
ARG REVISION=unknown
ENV SKAFFOLD_EXPORTER_REVISION=${REVISION}
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin skaffold-exporter \
    && install -D -m 0755 target/release/skaffold-exporter /out/skaffold-exporter

FROM debian:${DEBIAN_RELEASE}-slim
# ca-certificates: OTLP export to a TLS collector endpoint.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/skaffold-exporter /usr/local/bin/skaffold-exporter
# numeric uid/gid so Kubernetes runAsNonRoot can verify it
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/skaffold-exporter"]
CMD ["--listen", "0.0.0.0:9464"]
