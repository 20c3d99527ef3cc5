-- One benchmark scenario for wrk (bench/run.py writes the arguments).
--
-- wrk -s bench/scenario.lua URL -- METHOD PATH BODY IDS_FILE QUOTA
--   PATH and BODY are templates ({run} is filled in by bench/run.py): {id} becomes a random line of IDS_FILE, {n} a number unique to
--   this request in this run (thread × 10^7 + count), {m} a number unique within this thread's
--   share of IDS_FILE (for adds that must not repeat). BODY "-" sends none. QUOTA > 0 stops each
--   thread after that many requests (creates and adds that must stay unique).
-- done() prints one JSON line (`BENCH {...}`) that bench/run.py reads.

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

local method, path_t, body_t, ids, quota, sent, share_start, share_len

function init(args)
  method, path_t, body_t = args[1], args[2], args[3]
  quota = tonumber(args[5]) or 0
  ids = {}
  if args[4] ~= "-" then
    for line in io.lines(args[4]) do ids[#ids + 1] = line end
  end
  sent = 0
  local nthreads = tonumber(args[6]) or 1
  share_len = math.floor(#ids / nthreads)
  share_start = (tid - 1) * share_len
  math.randomseed(tid * 7919)
end

local function fill(t)
  if t == "-" then return nil end
  local n = tid * 10000000 + sent
  t = t:gsub("{n}", tostring(n))
  if #ids > 0 then
    t = t:gsub("{id}", function() return ids[math.random(#ids)] end)
    t = t:gsub("{m}", function() return ids[share_start + (sent % share_len) + 1] end)
  end
  return t
end

function request()
  sent = sent + 1
  if quota > 0 and sent > quota then
    wrk.thread:stop()
  end
  return wrk.format(method, fill(path_t), nil, fill(body_t))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
