-- ARGV[5..]: worker, lease_ms. 1 while the worker still owns the running job, else 0.

if settle() ~= 'running' or redis.call('HGET', job, 'worker') ~= ARGV[5] then return 0 end
redis.call('SET', lease, ARGV[5], 'PX', ARGV[6])
touch()
return 1
