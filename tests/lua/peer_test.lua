-- vigil.peer: peer declarations and their refusals.
local T = require "testing"

local function fresh()
  package.loaded["vigil.peer"] = nil
  return require "vigil.peer"
end

T.test("a peer with defaults", function()
  local p = fresh()
  T.eq(#T.errors_of(function()
    p.peer "nodeb" { url = "https://10.1.0.2:8443/", ca = "/e/ca.pem", cert = "/e/a.pem", key = "/e/a.key" }
    p.peer "local" { url = "http://127.0.0.1:9000", every = "1s", fails = 2 }
  end), 0, "accepted")
  local l = p.list()
  T.eq(#l, 2, "two")
  T.eq(l[1].name, "nodeb", "order")
  T.eq(l[1].url, "https://10.1.0.2:8443", "trailing slash dropped")
  T.eq(l[1].every, 5, "every default")
  T.eq(l[1].fails, 3, "fails default")
  T.eq(l[2].every, 1, "every")
  T.eq(l[2].timeout, 1, "timeout follows every")
end)

T.test("bad peers name the key and the line", function()
  local cases = {
    { { url = "ftp://x" }, "expected https://HOST:PORT" },
    { { url = "http://10.1.0.2:8443" }, "plain HTTP to another machine" },
    { { url = "https://nodeb:8443/v1" }, "no path" },
    { { url = "https://nodeb:99999" }, "port must be 1-65535" },
    { { url = "https://nodeb", ca = "ca.pem" }, "ca: an absolute file path" },
    { { url = "https://nodeb", cert = "/c" }, "'cert' and 'key' go together" },
    { { ca = "/c" }, "'url' is required" },
    { { url = "https://nodeb", evry = "5s" }, "did you mean 'every'" },
  }
  for i, c in ipairs(cases) do
    local p = fresh()
    local at = T.here() local errs = T.errors_of(function() p.peer "n" (c[1]) end)
    T.eq(#errs >= 1, true, "case " .. i)
    T.contains(errs[1], at, "file:line " .. i)
    T.contains(errs[1], c[2], "case " .. i)
  end
  local p = fresh()
  p.peer "n" { url = "https://a" }
  T.contains(T.errors_of(function() p.peer "n" { url = "https://b" } end)[1], "declared twice", "twice")
  T.contains(T.errors_of(function() p.peer "bad name" end)[1], "peer: the name must be", "name")
end)
