"""``rvt`` and the process tooling around the service: the local stack, the remote client, the
container healthcheck and the settings docs. Nothing in ``api``, ``worker`` or ``shared``
imports it."""
