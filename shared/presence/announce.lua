-- KEYS[1]: the queue's sorted set. ARGV: worker, ttl_seconds.
-- Server time (TIME), not each host's clock, so clock skew cannot make a live worker look dead.

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - ttl))
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000))
return 1
