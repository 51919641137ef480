# The topicbridge image: the gateway (`topicbridge serve`, the default command) and the lite engine
# service (`topicbridge engine`), installed from a wheel, run as a non-root user.
#
#   docker build -t topicbridge .                                   # base python:3.11-slim
#   docker build --build-arg BASE_IMAGE=topicbridge-base:bookworm -t topicbridge .
#
# BASE_IMAGE is any Debian-like image with python3 (3.11+, with its venv module) and useradd; the
# second form is for machines that cannot pull from a registry: deploy/base_image.sh makes that
# base from Debian packages. `make image-check` builds the image and runs it to /readyz.
# BuildKit is not required (no RUN --mount), so the legacy builder of Debian's docker.io works too.
ARG BASE_IMAGE=python:3.11-slim

# Stage 1: build the wheel and install it, with its dependencies, into a virtualenv. Only the
# virtualenv reaches the final image: no sources, no build tools, no pip cache.
FROM ${BASE_IMAGE} AS build
ARG EXTRAS=kafka,rocketmq
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/topicbridge
WORKDIR /src
# .dockerignore lets in only what the wheel is made of (pyproject.toml, README.md, the packages).
COPY . .
RUN /opt/topicbridge/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && wheel="$(ls /wheels/topicbridge-*.whl)" \
 && /opt/topicbridge/bin/pip install "${wheel}${EXTRAS:+[$EXTRAS]}" \
 && /opt/topicbridge/bin/topicbridge --help >/dev/null

# Stage 2: the runtime. Same base, so the virtualenv's interpreter link stays valid.
FROM ${BASE_IMAGE}
ARG UID=10001
RUN useradd --system --uid "${UID}" --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin topicbridge \
 && mkdir -p /data \
 && chown topicbridge:topicbridge /data
COPY --from=build /opt/topicbridge /opt/topicbridge
# Listening beyond loopback requires authentication: `serve` refuses to start until
# TOPICBRIDGE_GATEWAY__BEARER_TOKENS (or gateway.oauth) is set.
ENV PATH=/opt/topicbridge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TOPICBRIDGE_GATEWAY__HOST=0.0.0.0 \
    TOPICBRIDGE_GATEWAY__PORT=8080 \
    TOPICBRIDGE_LITE__DATA_DIR=/data/engine
USER topicbridge
WORKDIR /data
# The embedded engine's commit log (and anything else the process writes) lives here.
VOLUME ["/data"]
EXPOSE 8080
# /readyz: 200 once every part started, no background loop is down and the backend answers.
# Python's urllib, not curl: the slim and Debian minbase images have no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('TOPICBRIDGE_GATEWAY__PORT', '8080'), timeout=4)"]
ENTRYPOINT ["topicbridge"]
CMD ["serve"]
