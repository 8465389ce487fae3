# syntax=docker/dockerfile:1
#
# Two ways to the same image: a static binary, CA certificates, user 65532,
# nothing else (no shell, no package manager).
#
#   docker build -t action-provider .            # builds the binary in golang:1.26
#   make image                                   # CI: no registry reachable, so it
#                                                # packs the binary built on the host
#                                                # (target "prebuilt") with buildah
#
# "prebuilt" comes first so that a builder that walks stages in order stops
# before it would have to pull the Go image.

# ---- prebuilt: the root file system made by `make rootfs` on the host ----
FROM scratch AS prebuilt
ARG VERSION=dev
LABEL org.opencontainers.image.title="keptn action-provider" \
      org.opencontainers.image.description="Runs Keptn remediation actions (scale, ...) and reports action.started/finished" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY dist/rootfs/ /
USER 65532:65532
EXPOSE 8080 8090
ENTRYPOINT ["/action-provider"]

# ---- build: compile in a pinned Go toolchain ----
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -tags nosandbox,grpcnotrace \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /rootfs/action-provider ./cmd/action-provider \
 && mkdir -p /rootfs/etc/ssl/certs \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/

# ---- release (the default target) ----
FROM scratch AS release
ARG VERSION=dev
LABEL org.opencontainers.image.title="keptn action-provider" \
      org.opencontainers.image.description="Runs Keptn remediation actions (scale, ...) and reports action.started/finished" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /rootfs/ /
USER 65532:65532
EXPOSE 8080 8090
ENTRYPOINT ["/action-provider"]
