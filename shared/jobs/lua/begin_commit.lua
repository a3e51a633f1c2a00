-- The commit point: 1 when the worker may save its result; later cancels are refused.

if settle() ~= 'running' or redis.call('HGET', job, 'cancel_requested') == '1' then return 0 end
redis.call('HSET', job, 'committing', '1')
touch()
return 1
