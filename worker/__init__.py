"""chatq workers: the Celery application and everything a worker needs."""
