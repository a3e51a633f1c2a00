-- ARGV[5]: error json. KEYS[6] (optional): the idempotency key to forget.

if redis.call('HGET', job, 'status') ~= 'queued' then return 0 end
redis.call('HSET', job, 'status', 'failed', 'finished_at', now, 'error', ARGV[5])
finalized('failed')
touch()
if KEYS[6] then redis.call('DEL', KEYS[6]) end
return 1
