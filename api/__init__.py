"""The HTTP API: accepts work and answers from what workers already hold; it trains nothing."""
