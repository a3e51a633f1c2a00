-- Prepended to every job script (see shared/jobs/scripts.py).
-- KEYS = {record, lease, index, metrics_jobs, metrics_seconds, ...the script's own}
-- ARGV = {now_iso, ttl_seconds, lost_error_json, cancelled_error_json, ...the script's own}
-- settle() runs first, so a lapsed lease is judged the same way by every entry point;
-- finalized() is called by every transition to a final status, and only there.
-- A job settled as lost is marked 'lost', so finish.lua can tell it from a real failure.

local job, lease, index, mjobs, mseconds = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now, ttl = ARGV[1], tonumber(ARGV[2])
local BUCKETS = {__DURATION_BUCKETS__}

local function touch()
  redis.call('EXPIRE', job, ttl)
  redis.call('EXPIRE', index, ttl)
end

local function server_seconds()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- Count the job under its final status (step 1), or take that count back (step -1: a job
-- settled as lost after its commit point whose worker then saved its result after all).
local function count_final(status, step)
  local base = (redis.call('HGET', job, 'kind') or 'unknown') .. '|' .. status
  redis.call('HINCRBY', mjobs, base, step)
  redis.call('EXPIRE', mjobs, ttl)
  local seconds = tonumber(redis.call('HGET', job, 'final_seconds') or '')
  if step > 0 then
    local started = tonumber(redis.call('HGET', job, 'started_ts') or '')
    seconds = started and string.format('%.6f', math.max(0, server_seconds() - started))
    if seconds then redis.call('HSET', job, 'final_seconds', seconds) end
    seconds = tonumber(seconds)
  end
  if seconds then
    for i, bound in ipairs(BUCKETS) do
      if seconds <= bound then redis.call('HINCRBY', mseconds, base .. '|' .. i, step) end
    end
    redis.call('HINCRBY', mseconds, base .. '|count', step)
    redis.call('HINCRBYFLOAT', mseconds, base .. '|sum', string.format('%.6f', step * seconds))
    redis.call('EXPIRE', mseconds, ttl)
  end
end

local function finalized(status)
  count_final(status, 1)
end

local function settle()
  if redis.call('HGET', job, 'status') == 'running' and redis.call('EXISTS', lease) == 0 then
    if redis.call('HGET', job, 'cancel_requested') == '1' then
      redis.call('HSET', job, 'status', 'cancelled', 'error', ARGV[4], 'finished_at', now)
      finalized('cancelled')
    else
      redis.call('HSET', job, 'status', 'failed', 'error', ARGV[3], 'finished_at', now, 'lost', '1')
      finalized('failed')
    end
    touch()
  end
  return redis.call('HGET', job, 'status')
end
