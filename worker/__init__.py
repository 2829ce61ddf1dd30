"""chatq workers: the Celery application and everything a worker needs.

`celery -A worker worker` finds the application as `worker.celery`; it is imported
only when asked for, so the provider layer can be used without loading Celery.
"""

from typing import Any

__all__ = ["celery"]


def __getattr__(name: str) -> Any:
    if name == "celery":
        from worker.app import app

        return app
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
