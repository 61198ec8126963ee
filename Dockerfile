# syntax=docker/dockerfile:1
#
# SceneScore container image: Swift 6.3.1 build on Debian 12 (bookworm), bookworm-slim runtime.
#
#   docker buildx build --platform linux/amd64 -t scenescore:dev .
#   docker buildx build --build-arg SCENESCORE_TARGET_CPU=znver4 -t scenescore:znver4 .
#   docker buildx build --build-context model=var/models/default -t scenescore:dev .   # bring your own model
#
# Stages: build (compiler, headers) -> model-train (trains the default model with the binary just
# built) -> model (the model files alone, overridable) -> runtime (what runs in the pod).
# deploy/README.md explains the choices; Tests/deploy/test_dockerfile.py checks this file.

# The official Swift image for Debian 12 ships the 6.3.1 toolchain in /usr (swift, the
# runtime libraries in /usr/lib/swift/linux). Pin it by digest in production
# (--build-arg SWIFT_IMAGE=swift:6.3.1-bookworm@sha256:...). A site that may not pull it can
# point SWIFT_IMAGE at its own Debian 12 image holding the swift.org toolchain tarball
# (signature-checked, unpacked into /usr), which is the same layout.
ARG SWIFT_IMAGE=swift:6.3.1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

########################################################################################### build
FROM ${SWIFT_IMAGE} AS build

# Package.swift compiles the SIMD kernels with -target-cpu $SCENESCORE_TARGET_CPU (default
# haswell = AVX2 + FMA). The binary refuses to start on a CPU without that level, so build one
# image per CPU level you deploy on (and schedule it there, e.g. with a node selector).
ARG SCENESCORE_TARGET_CPU=haswell

# C libraries the package links: libnghttp2 and OpenSSL (pkg-config libnghttp2, openssl), and
# libpq for the PostgreSQL scene registry.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        pkg-config libnghttp2-dev libssl-dev libpq-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Dependencies first: this layer stays cached while only sources change. Package.resolved is
# not committed; when the build context has one, its versions are used exactly.
COPY Package.* ./
RUN swift package resolve $([ -f Package.resolved ] && echo --force-resolved-versions || true)

# Everything Package.swift names (test targets included: SwiftPM checks every target's path).
COPY Sources ./Sources
COPY Plugins ./Plugins
COPY Tests ./Tests
COPY scripts/install-plugins.sh ./scripts/install-plugins.sh

# The server and the bundled scene plugins (the products scripts/install-plugins.sh installs).
# The Swift runtime stays dynamic, no --static-swift-stdlib: the apparel and electronics
# plugins are Swift libraries linked against libswiftCore.so, and a server with a static copy
# of the runtime would dlopen() them into a second Swift runtime in the same process.
RUN SCENESCORE_TARGET_CPU="${SCENESCORE_TARGET_CPU}" swift build -c release --product scenescore \
 && for product in ApparelPlugin ElectronicsPlugin BeautyPlugin; do \
        SCENESCORE_TARGET_CPU="${SCENESCORE_TARGET_CPU}" swift build -c release --product "$product" || exit 1; \
    done \
 && bin="$(swift build -c release --show-bin-path)" \
 && install -D -m 0755 "$bin/scenescore" /out/bin/scenescore \
 && scripts/install-plugins.sh "$bin" /out/plugins \
 && mkdir -p /out/swift-runtime \
 && ldd /out/bin/scenescore /out/plugins/*.so \
      | awk '$2 == "=>" && $3 ~ /\/lib\/swift\// { print $3 }' | sort -u \
      | xargs -r cp -L -t /out/swift-runtime/ \
 && ls -l /out/bin /out/plugins /out/swift-runtime

##################################################################################### model-train
# The default model (backbone + scene heads), trained deterministically by the binary itself
# (about 30 s on two cores). This runs the binary, so the build host's CPU must have the
# SCENESCORE_TARGET_CPU level; otherwise supply the model as a build context (next stage).
FROM build AS model-train
RUN /out/bin/scenescore model init --dir /out/model

########################################################################################### model
# The model files alone, at the root of this stage. `--build-context model=DIR` replaces this
# stage by a local directory (BuildKit named contexts override a stage of the same name), e.g.
# a model trained elsewhere or with `scenescore train --out DIR`; model-train is then skipped.
FROM scratch AS model
COPY --from=model-train /out/model/ /

######################################################################################### runtime
FROM ${RUNTIME_IMAGE} AS runtime

# Runtime libraries only: nghttp2, OpenSSL 3, libpq (PostgreSQL registry), the C++ runtime the
# Swift runtime uses, and CA certificates (libpq's sslrootcert, e.g. for a managed PostgreSQL).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libnghttp2-14 libssl3 libpq5 libstdc++6 ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# The Swift runtime libraries the binary and the plugins need, where the official toolchain
# image keeps them (the binary's RUNPATH), and known to the dynamic loader as well.
COPY --from=build /out/swift-runtime/ /usr/lib/swift/linux/
RUN echo /usr/lib/swift/linux > /etc/ld.so.conf.d/swift.conf && ldconfig

# A numeric, non-root user: Kubernetes' runAsNonRoot can only verify a numeric USER.
RUN groupadd --system --gid 10001 scenescore \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/scenescore --no-create-home \
        --shell /usr/sbin/nologin scenescore \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/scenescore /var/lib/scenescore/state

COPY --from=build /out/bin/scenescore /usr/local/bin/scenescore
COPY --from=build /out/plugins/ /opt/scenescore/plugins/
COPY --from=model / /opt/scenescore/models/default/

# Writable state (scene registry state directory; development certificates under var/certs
# when no --tls-cert is given) lives under the working directory. In Kubernetes it is an
# emptyDir, the root filesystem being read-only.
WORKDIR /var/lib/scenescore
USER 10001:10001

# 8443: scoring (TLS, ALPN h2). 9443: admin API (TLS, h2), on only with a token or client CA.
EXPOSE 8443 9443

# Settings are flags, not ENV: SCENESCORE_* variables outrank a --config file, so an image ENV
# would silently override the Kubernetes ConfigMap. The Deployment's args replace this CMD.
ENTRYPOINT ["/usr/local/bin/scenescore"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8443", \
     "--model-dir", "/opt/scenescore/models/default", \
     "--plugin-dir", "/opt/scenescore/plugins", \
     "--state-dir", "/var/lib/scenescore/state"]
