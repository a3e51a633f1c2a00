-- The record as a flat HGETALL reply, or false when there is none.

if not settle() then return false end
return redis.call('HGETALL', job)
