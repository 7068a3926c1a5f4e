-- ARGV: prefix, now, key, rate, burst. Takes one token from the bucket (refilled at rate/s up
-- to burst, full when absent). Returns '0' when taken, else the seconds until one is there,
-- as a string: Redis would cut a Lua number down to an integer.
local now, rate, burst = tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5])
local key = P .. 'bucket:' .. ARGV[3]
local v = redis.call('HMGET', key, 'tokens', 'at')
local tokens, at = burst, now
if v[1] then
  tokens, at = tonumber(v[1]), tonumber(v[2])
end
-- pigeon/bucket.py's take, in the script so that it is atomic across workers.
-- Workers' clocks differ a little: never refill backwards, never move the clock back.
if now > at then
  tokens = tokens + (now - at) * rate
  at = now
end
tokens = math.min(burst, tokens)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
elseif rate > 0 then
  wait = (1 - tokens) / rate
else
  wait = math.huge -- never refills
end
redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'at', string.format('%.17g', at))
if rate > 0 then
  -- Once full again the bucket is the same as no bucket: let it go.
  redis.call('PEXPIRE', key, math.ceil((burst - tokens) / rate * 1000) + 1000)
end
return string.format('%.17g', wait)
