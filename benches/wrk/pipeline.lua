-- Pipelining: every write carries DEPTH requests (default 16) and wrk counts each
-- response:  wrk -s pipeline.lua URL -- 16
function init(args)
  local depth = tonumber(args[1]) or 16
  local r = {}
  for i = 1, depth do r[i] = wrk.format() end
  req = table.concat(r)
end

function request()
  return req
end
