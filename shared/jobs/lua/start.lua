-- ARGV[5..]: worker, lease_ms. Claims a queued job: the record, or false.

local status = redis.call('HGET', job, 'status')
if status ~= 'queued' then return false end
redis.call('HSET', job, 'status', 'running', 'started_at', now, 'worker', ARGV[5],
  'started_ts', string.format('%.6f', server_seconds()))
redis.call('HINCRBY', job, 'attempts', 1)
redis.call('SET', lease, ARGV[5], 'PX', ARGV[6])
touch()
return redis.call('HGETALL', job)
