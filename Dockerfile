# The gateway image used by deploy/docker-compose.*.yml. (Not built in CI: our machines have no Docker engine.)
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY lite_engine lite_engine
COPY adapters adapters
COPY gateway gateway
COPY schemas schemas
COPY examples examples
RUN pip install --no-cache-dir -e '.[kafka,rocketmq]'
ENV TOPICBRIDGE_GATEWAY__HOST=0.0.0.0
EXPOSE 8080
# Listening beyond loopback requires a token: set TOPICBRIDGE_GATEWAY__BEARER_TOKENS.
CMD ["topicbridge", "serve"]
