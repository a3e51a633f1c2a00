"""Stand-in images for an engine that cannot pull (see :mod:`tests.deploy.standin.build`)."""
