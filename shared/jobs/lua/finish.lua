-- ARGV[5..]: status, result_json or '', error_json or ''.
-- A job settled as lost while past its commit point (its lease lapsed, but its worker was alive
-- and saved the version) still ends succeeded: nothing after the commit point makes a committed
-- training a failure. The lost verdict is taken back, metrics included.

local status = ARGV[5]
local current = settle()
if current ~= 'running' then
  if not (status == 'succeeded' and current == 'failed'
          and redis.call('HGET', job, 'lost') == '1'
          and redis.call('HGET', job, 'committing') == '1') then
    return 0
  end
  count_final('failed', -1)
  redis.call('HDEL', job, 'lost')
end
if status == 'succeeded' and redis.call('HGET', job, 'cancel_requested') == '1' then return 0 end
redis.call('HSET', job, 'status', status, 'finished_at', now)
if status == 'succeeded' then redis.call('HSET', job, 'progress', '1') end
if ARGV[6] ~= '' then redis.call('HSET', job, 'result', ARGV[6])
else redis.call('HDEL', job, 'result') end
if ARGV[7] ~= '' then redis.call('HSET', job, 'error', ARGV[7])
else redis.call('HDEL', job, 'error') end
redis.call('DEL', lease)
finalized(status)
touch()
return 1
