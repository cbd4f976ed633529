# One image for every role: `serve` (default), `worker`, `db upgrade`, `set-webhooks`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY dialogs ./dialogs
COPY integrations ./integrations
COPY locales ./locales
RUN pip install '.[postgres]' && rm -rf /src

RUN useradd --create-home --uid 10001 touchpoint && mkdir -p /data && chown touchpoint /data
USER touchpoint
WORKDIR /data
ENV TOUCHPOINT_HOST=0.0.0.0 \
    TOUCHPOINT_PORT=8080 \
    TOUCHPOINT_DATABASE_URL=sqlite+aiosqlite:////data/touchpoint.db
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3)" || exit 1
ENTRYPOINT ["python", "-m", "bot"]
CMD ["serve"]
