-- ARGV: prefix, job ids... Deletes those jobs whatever their state; returns how many were there.
-- A deleted running job frees its limit slot, which may put a parked job back in ready.
local count = 0
for i = 2, #ARGV do
  count = count + delete_job(ARGV[i])
end
publish()
return count
