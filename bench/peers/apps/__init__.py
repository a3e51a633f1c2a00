"""Code that runs inside the peers' own venvs (MLServer runtimes, BentoML services), with the
repository on PYTHONPATH: it imports the project's registry and table scorer, never the bench's
own modules that need the project venv."""
