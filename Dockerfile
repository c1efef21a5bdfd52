# syntax=docker/dockerfile:1
# health-agent: a static binary on distroless, non-root. Build (from the repository root):
#   docker build -t health-agent:$(git describe --tags --always) --build-arg VERSION=$(git describe --tags --always) .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/health-agent:TAG --push .
# HEALTHCHECK is honoured by Docker and Compose (image format "docker"); Kubernetes ignores it and uses the
# probes in deploy/k8s. With podman or buildah, build with --format docker to keep it.

ARG GO_VERSION=1.26

# The compiler runs on the build machine and cross-compiles for each target platform: no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd ./cmd
COPY configs ./configs
COPY pkg ./pkg
ARG TARGETOS TARGETARCH
ARG VERSION=dev
# nomsgpack leaves out gin's MessagePack codec, which nothing of the agent's uses: a 6 MiB smaller
# binary, and less of it mapped in. deploy/k8s/image_test.go builds with the same flags.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -tags nomsgpack -trimpath -ldflags "-s -w -X github.com/health-agent/health-agent/pkg/version.value=${VERSION}" -o /out/agent ./cmd/agent

# distroless/static: no shell, no package manager; CA certificates (the figma probe speaks TLS), tzdata,
# and a passwd entry for the nonroot user 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/agent /agent
USER 65532:65532
EXPOSE 3008
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/agent", "healthcheck"]
# No arguments: the embedded default config. In Kubernetes: args ["--config=/etc/health-agent/agent.yaml"].
ENTRYPOINT ["/agent"]
