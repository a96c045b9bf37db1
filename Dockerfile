# syntax=docker/dockerfile:1
# Palisade container image. The SQLite store needs cgo, so the binary is
# built with gcc against glibc and runs on the matching Debian release.

FROM golang:1.26-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=1
# gcc and libc6-dev come with the golang image; keep the check explicit.
RUN gcc --version >/dev/null
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -ldflags "-s -w" -o /out/palisade .

FROM debian:bookworm-slim
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
	&& rm -rf /var/lib/apt/lists/* \
	&& groupadd --system --gid 10001 palisade \
	&& useradd --system --uid 10001 --gid palisade --home-dir /var/lib/palisade --shell /usr/sbin/nologin palisade \
	&& mkdir -p /var/lib/palisade /etc/palisade \
	&& chown palisade:palisade /var/lib/palisade
COPY --from=build /out/palisade /usr/local/bin/palisade
USER palisade
WORKDIR /var/lib/palisade
VOLUME ["/var/lib/palisade", "/etc/palisade"]
# 5222 c2s STARTTLS, 5223 c2s direct TLS, 5280 WebSocket, 5281 admin (/healthz).
# The configuration must listen on 0.0.0.0 (not the 127.0.0.1 defaults) and
# set server.data_dir = "/var/lib/palisade" to use these.
EXPOSE 5222 5223 5280 5281
ENTRYPOINT ["/usr/local/bin/palisade"]
CMD ["--config", "/etc/palisade/palisade.toml", "serve"]
