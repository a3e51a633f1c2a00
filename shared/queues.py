"""Names both sides of the queue boundary agree on; here so the API can use them without
importing Celery."""

from typing import Final

TRAINING_QUEUE: Final = "training"
PREDICTION_QUEUE: Final = "prediction"
QUEUES: Final = (TRAINING_QUEUE, PREDICTION_QUEUE)
TRAIN_TASK: Final = "rvt.train"
PREDICT_TASK: Final = "rvt.predict"

#: How Celery's Redis transport (kombu) stores a queue: a list named after the queue, plus one
#: list per non-zero priority step, named ``<queue>\x06\x16<step>`` (kombu's defaults).
_PRIORITY_SEPARATOR: Final = "\x06\x16"
_PRIORITY_STEPS: Final = (3, 6, 9)


def broker_lists(queue: str) -> list[str]:
    """The Redis lists holding a queue's waiting messages: their lengths sum to its depth."""
    return [queue, *(f"{queue}{_PRIORITY_SEPARATOR}{step}" for step in _PRIORITY_STEPS)]
