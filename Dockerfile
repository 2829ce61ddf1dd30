FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY chatq ./chatq
COPY config ./config
COPY worker ./worker
COPY tasks ./tasks
RUN pip install --no-cache-dir '.[monitor]'
RUN useradd --create-home chatq
USER chatq
CMD ["celery", "-A", "worker", "worker", "--pool", "threads", "--events"]
