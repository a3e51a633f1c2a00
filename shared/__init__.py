"""The domain shared by the API and the workers: data, training, evaluation and the registry.

Nothing here imports FastAPI or Celery, so the training core can be used and tested alone.
"""
