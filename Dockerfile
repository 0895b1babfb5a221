# The postback dispatcher: `dispatcher run` by default; the same image serves `dispatcher sandbox`.
#
#   docker build -t postback-dispatcher .
#   docker run -v "$PWD/config:/etc/dispatcher:ro" -e TIKTOK_ACCESS_TOKEN=... -p 9108:9108 postback-dispatcher
# (the configuration is read from $DISPATCHER_CONFIG, /etc/dispatcher/dispatcher.yaml by default)
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DISPATCHER_CONFIG=/etc/dispatcher/dispatcher.yaml

# Only what the package needs: pyproject.toml names README.md as its readme.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY dispatcher ./dispatcher
RUN pip install --no-cache-dir . \
    && rm -rf /src/build /src/*.egg-info

# A fixed, unprivileged uid (not 0), so orchestrators can check `runAsNonRoot`.
RUN useradd --system --uid 10001 --create-home --shell /usr/sbin/nologin dispatcher
USER 10001
WORKDIR /home/dispatcher

EXPOSE 9108
# /healthz answers 503 once the main loop has stalled. `dispatcher health` asks it on the port the
# configuration gives (metrics.port, or DISPATCHER_METRICS__PORT), not on a fixed 9108; both it
# and `run` find the configuration through DISPATCHER_CONFIG: set that to mount it elsewhere.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["dispatcher", "health"]

ENTRYPOINT ["dispatcher"]
CMD ["run"]
