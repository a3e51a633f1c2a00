-- ARGV[5..]: job_id, kind, params_json, score, index_limit, fingerprint, prefix.
-- KEYS[6] (optional): the idempotency key.
-- Returns {'created', record}, {'existing', job_id} or {'conflict', job_id}.

local job_id, fingerprint, prefix = ARGV[5], ARGV[10], ARGV[11]
local idem = KEYS[6]
if idem then
  local prev = redis.call('HMGET', idem, 'job_id', 'fingerprint')
  if prev[1] and redis.call('EXISTS', prefix .. ':job:' .. prev[1]) == 1 then
    if prev[2] == fingerprint then return {'existing', prev[1]} end
    return {'conflict', prev[1]}
  end
end
redis.call('HSET', job, 'job_id', job_id, 'kind', ARGV[6], 'status', 'queued', 'progress', '0',
  'rows_read', '0', 'submitted_at', now, 'params', ARGV[7], 'cancel_requested', '0',
  'committing', '0', 'attempts', '0')
redis.call('ZADD', index, ARGV[8], job_id)
local extra = redis.call('ZCARD', index) - tonumber(ARGV[9])
if extra > 0 then redis.call('ZREMRANGEBYRANK', index, 0, extra - 1) end
touch()
if idem then
  redis.call('HSET', idem, 'job_id', job_id, 'fingerprint', fingerprint)
  redis.call('EXPIRE', idem, ttl)
end
return {'created', redis.call('HGETALL', job)}
