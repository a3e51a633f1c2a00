"""The Open Inference Protocol (KServe V2, REST) beside the project's own API: the same
prediction path (batching, workers, overload bound, read key) spoken in the protocol's tensors.

:mod:`.routes` is the router, :mod:`.schemas` the protocol's objects, :mod:`.codec` tensors to
feature codes and back (with Triton's binary tensor extension), :mod:`.errors` the protocol's
error shape for every answer under ``/v2``.
"""
