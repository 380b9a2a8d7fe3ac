# Production image: gunicorn serving the API and pages; the scheduler and migrations run from
# the same image with other commands (see README "Production"). Inside a container the
# server must listen on the container interface (GUNICORN_BIND); elsewhere it defaults to 127.0.0.1.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus \
    OMNISTOCK_INSTANCE_PATH=/var/lib/omnistock \
    FLASK_APP=app \
    GUNICORN_BIND=0.0.0.0:8000

WORKDIR /srv/omnistock
COPY requirements.txt .
RUN pip install -r requirements.txt

RUN useradd --system --uid 10001 --home-dir /srv/omnistock omnistock \
    && mkdir -p /var/lib/omnistock /tmp/prometheus \
    && chown omnistock /var/lib/omnistock /tmp/prometheus
COPY --chown=omnistock alembic.ini ./
COPY --chown=omnistock config ./config
COPY --chown=omnistock migrations ./migrations
COPY --chown=omnistock app ./app

USER omnistock
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"

# Migrations are a separate, explicit step:  docker run --rm IMAGE flask db upgrade
CMD ["gunicorn", "--config", "config/gunicorn.conf.py", "app:create_app()"]
