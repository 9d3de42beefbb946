# Herald: gunicorn's eventlet worker (gunicorn pinned to 25.3.0; 26+ dropped that worker).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HOST=0.0.0.0 \
    PORT=5000

WORKDIR /srv/herald
RUN useradd --create-home --uid 10001 herald

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY app ./app
COPY migrations ./migrations
COPY static ./static
COPY templates ./templates
COPY wsgi.py gunicorn.conf.py ./
RUN mkdir -p instance && chown herald:herald instance

USER herald
EXPOSE 5000
# JWT_SECRET_KEY is required (production refuses to start without it); DATABASE_URL and
# MESSAGE_QUEUE_URL point at PostgreSQL and Redis when running several containers.
CMD ["sh", "-c", "flask --app wsgi db upgrade && exec gunicorn -c gunicorn.conf.py -k eventlet -w 1 wsgi:app"]
