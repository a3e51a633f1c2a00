"""The model: its pipeline, streaming training, evaluation, and scoring from lookup tables."""
