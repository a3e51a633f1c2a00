"""Request and response bodies: every one the API reads or writes, so /docs shows them all;
one module per resource, as the routers are."""
