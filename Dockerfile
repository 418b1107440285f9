# syntax=docker/dockerfile:1
# shoplake's container image (README "Install", docs/ci.md "The image").
#
#   docker buildx build --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" -t shoplake .
#   docker run --rm -e AWS_REGION=eu-west-1 shoplake ingest --date 2019-04-01 \
#       --source s3://raw/exports --table s3://lake/shopify_configuration
#
# Build stage: the pinned toolchain (Cargo.toml's rust-version), with BuildKit
# cache mounts for the crate registry and the target directory so a rebuild
# after a source change recompiles only shoplake itself. The cache mounts are
# not part of any layer, so the binary is copied out of the target directory
# in the same RUN.
FROM rust:1.95.0-bookworm AS build
# The commit `shoplake --version` names (.git is not in the build context).
ARG REVISION=unknown
ENV SHOPLAKE_GIT_COMMIT=${REVISION}
WORKDIR /src
COPY . .
RUN --mount=type=cache,id=shoplake-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=shoplake-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=shoplake-target,target=/src/target,sharing=locked \
    cargo build --release --locked --bin shoplake \
    && install -D -m 0755 target/release/shoplake /out/shoplake

# Runtime stage: distroless "cc" (glibc, libgcc, CA certificates, tzdata; no
# shell, no package manager), the same Debian 12 as the build stage so the
# binary's glibc matches. Runs as the image's non-root user 65532 (nonroot).
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
# The repository URL (release.yml passes it).
ARG SOURCE=""
# The binary's CycloneDX SBOM: `make release` writes
# dist/shoplake-<version>-<target>.cdx.json from the same Cargo.lock for the
# same target, and release.yml attaches it to the GitHub release; it passes
# the file's name and URL here. Empty for a build outside a release.
ARG SBOM=""
ARG SBOM_URL=""
LABEL org.opencontainers.image.title="shoplake" \
      org.opencontainers.image.description="Loads daily Shopify configuration exports into a Delta Lake table, idempotently." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.shoplake.sbom="${SBOM}" \
      io.shoplake.sbom.format="CycloneDX 1.5 JSON" \
      io.shoplake.sbom.url="${SBOM_URL}"
COPY --from=build /out/shoplake /usr/local/bin/shoplake
# The default --table and --source (./lake, ./data/raw) are relative to the
# working directory: mount a volume here for local tables, or pass s3:// URIs.
WORKDIR /home/nonroot
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/shoplake"]
CMD ["--help"]
