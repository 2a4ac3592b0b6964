# syntax=docker/dockerfile:1
#
# farm: one image for the coordinator and the render nodes; the arguments choose the role.
#
#   docker build -t farm .
#   docker run -e FARM_JOIN_TOKEN=... -e FARM_API_TOKEN=... -p 8080:8080 -p 7700:7700 -v farm-data:/data farm \
#       farm coordinator --http 0.0.0.0:8080 --node-listen 0.0.0.0:7700 --data-dir /data --tier standard
#   docker run -e FARM_JOIN_TOKEN=... farm farm node --coordinator HOST:PORT --tier standard
#       (add --device /dev/dri for VA-API, or --gpus all with the NVIDIA container toolkit for NVENC)
#
# The node port speaks TLS with a certificate the coordinator keeps in /data/tls; nodes need only the join token.
# deploy/README.md explains the Akash deployment (deploy/akash-*.yaml).

# ---- build: the official Swift image, on Debian bookworm like the runtime stage -------------------------------
FROM swift:6.3-bookworm AS build

# The headers and pkg-config files of the C libraries farm links.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        pkg-config \
        libavformat-dev libavcodec-dev libavutil-dev libswscale-dev \
        libva-dev \
        libcurl4-openssl-dev \
        libsqlite3-dev \
        libxxhash-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Package.resolved pins the dependencies when the checkout has one (the glob lets it be absent).
COPY Package.swift Package.resolve[d] ./
COPY Sources ./Sources
# SwiftPM refuses a manifest whose target folders are missing, and Package.swift names the test targets.
COPY Tests ./Tests
# The Swift standard library and Foundation are linked statically: the runtime stage needs no Swift toolchain,
# only the C libraries below. The cache keeps compiled dependencies between builds.
RUN --mount=type=cache,target=/src/.build \
    swift build -c release --static-swift-stdlib --product farm \
    && install -D -m 0755 "$(swift build -c release --static-swift-stdlib --show-bin-path)/farm" /out/farm

# ---- runtime: slim Debian bookworm with only the libraries farm needs at run time ------------------------------
FROM debian:bookworm-slim

# FFmpeg's libraries; libva with the VA-API drivers for Intel (iHD for Broadwell and later, i965 for older
# GPUs) and AMD (Mesa), which libva loads at run time; libcurl for fetching sources; SQLite for the job store; xxHash for segment checksums;
# CA certificates for HTTPS. Debian's libavcodec loads NVENC from the NVIDIA driver, which the NVIDIA
# container runtime mounts (see NVIDIA_DRIVER_CAPABILITIES below). Versions are not pinned: bookworm's
# security updates replace them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libavformat59 libavcodec59 libavutil57 libswscale6 \
        libva2 libva-drm2 intel-media-va-driver i965-va-driver mesa-va-drivers \
        libcurl4 \
        libsqlite3-0 \
        libxxhash0 \
        ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 farm \
    && useradd --system --uid 10001 --gid farm --create-home --home-dir /home/farm --shell /usr/sbin/nologin farm \
    && install -d -o farm -g farm -m 0750 /data

# Without "video" the NVIDIA container runtime mounts no NVENC library (libnvidia-encode) into the container.
# NVIDIA_VISIBLE_DEVICES is left to the runtime (--gpus, or the device plugin on Akash), so a container that
# asked for no GPU sees none.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,video,utility

COPY --from=build /out/farm /usr/local/bin/farm
COPY --chmod=0755 deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint
COPY --chmod=0755 deploy/healthcheck.sh /usr/local/bin/farm-healthcheck

WORKDIR /data
# 8080: the coordinator's HTTP API; 7700: the port render nodes dial.
EXPOSE 8080 7700

# GET /health on the coordinator's --http port; a render node (no HTTP) is healthy while it runs.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["/usr/local/bin/farm-healthcheck"]

# The entrypoint runs its arguments as the unprivileged user farm (uid 10001); it starts as root only to hand
# the data volume to farm and to join the groups of /dev/dri (deploy/docker-entrypoint.sh). Akash SDL files
# set `args` (farm coordinator ... or farm node ...), never `command`, so that it runs.
ENTRYPOINT ["/usr/local/bin/docker-entrypoint"]
CMD ["farm", "--help"]
