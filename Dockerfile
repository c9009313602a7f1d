# plantcdn: the local AWS S3 + CloudFront stand-in, as a small container.
#
# Listens on 0.0.0.0:8001 inside the container, which plantcdn allows only with a
# configured key pair (AWS_S3_ACCESS_KEY_ID / AWS_S3_SECRET_ACCESS_KEY, e.g. from
# .env through docker-compose.yml): with the public development pair it refuses to
# start.  Objects live in the volumes /app/s3_inbox and /app/s3_longterm.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, read from setup.py's RUNTIME list, so that editing the code
# does not reinstall them (layer caching).
COPY setup.py pyproject.toml ./
RUN python -c "import ast; tree = ast.parse(open('setup.py').read()); \
print('\n'.join(next(ast.literal_eval(node.value) for node in tree.body \
if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == 'RUNTIME')))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the code; the twistd plugin cache is built now, while site-packages is writable.
COPY plantcdn ./plantcdn
COPY twisted ./twisted
RUN pip install --no-deps . \
    && rm -rf build ./plantcdn ./twisted ./*.egg-info \
    && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"

# An unprivileged user owns only the storage folders.
RUN groupadd --system --gid 10001 plantcdn \
    && useradd --system --uid 10001 --gid plantcdn --home-dir /app --shell /usr/sbin/nologin plantcdn \
    && mkdir -p /app/s3_inbox /app/s3_longterm \
    && chown plantcdn:plantcdn /app/s3_inbox /app/s3_longterm
USER plantcdn
VOLUME ["/app/s3_inbox", "/app/s3_longterm"]

EXPOSE 8001

HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8001/_plantcdn/health', timeout=4).status == 200 else 1)"]

# twistd stops on SIGTERM: it stops accepting, lets uploads in flight finish for up
# to PLANTCDN_SHUTDOWN_GRACE seconds (default 10), then exits.
STOPSIGNAL SIGTERM
CMD ["twistd", "-n", "--pidfile=", "plantcdn", "--listen", "tcp:8001:interface=0.0.0.0", "--data-dir", "/app"]
