"""Celery workers: training on the ``training`` queue, predictions on the ``prediction`` queue.

``celery -A worker worker -Q training -c 1`` finds the app here.
"""

from worker.celery_app import app

__all__ = ["app"]
