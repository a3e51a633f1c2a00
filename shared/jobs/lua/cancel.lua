-- ARGV[5]: error json for a queued job. Returns {outcome, record}.

local status = settle()
if not status then return false end
local outcome
if status == 'queued' then
  redis.call('HSET', job, 'status', 'cancelled', 'finished_at', now, 'error', ARGV[5])
  finalized('cancelled')
  touch()
  outcome = 'cancelled'
elseif status == 'running' then
  if redis.call('HGET', job, 'committing') == '1' then
    outcome = 'committing'
  else
    redis.call('HSET', job, 'cancel_requested', '1')
    touch()
    outcome = 'requested'
  end
else
  outcome = 'final'
end
return {outcome, redis.call('HGETALL', job)}
