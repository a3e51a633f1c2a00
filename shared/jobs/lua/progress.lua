-- ARGV[5..]: stage, fraction, rows_read. Returns 1 when the worker should stop.

if settle() ~= 'running' then return 1 end
local fraction = ARGV[6]
local current = tonumber(redis.call('HGET', job, 'progress') or '0')
if tonumber(fraction) < current then fraction = redis.call('HGET', job, 'progress') end
redis.call('HSET', job, 'stage', ARGV[5], 'progress', fraction, 'rows_read', ARGV[7])
touch()
if redis.call('HGET', job, 'cancel_requested') == '1' then return 1 end
return 0
