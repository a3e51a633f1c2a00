"""Names both sides of the queue boundary agree on; here so the API can use them without
importing Celery."""

from typing import Final

TRAINING_QUEUE: Final = "training"
PREDICTION_QUEUE: Final = "prediction"
TRAIN_TASK: Final = "rvt.train"
PREDICT_TASK: Final = "rvt.predict"
