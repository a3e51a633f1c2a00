-- KEYS[1]: the queue's sorted set. ARGV: ttl_seconds. The workers seen within it.

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
