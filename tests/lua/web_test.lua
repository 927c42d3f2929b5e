-- vigil.web: the tomcat and apache probes' parsers on real-size pages
-- (mod_status ?auto of a 400-slot event MPM, a manager list of 156
-- applications), fed through a fake vigil.probe.http.
local T = require "testing"

-- Loads vigil.web with a vigil.probe whose http answers `res` at once
-- and records the request.
local function web_answering(res)
  local asked = {}
  local fake = {
    http = function(req, cb)
      asked[#asked + 1] = req
      cb(res)
      return 1
    end,
  }
  local web = T.load({ "vigil.web" }, { ["vigil.probe"] = fake })
  return web, asked
end

-- Runs a probe's check; -> ok, reason, evidence.
local function run(p)
  local got
  p.check(function(ok, reason, evidence) got = { ok, reason, evidence } end)
  T.ok(got, "the check answered")
  return got[1], got[2], got[3]
end

local APACHE = [==[
127.0.0.1
ServerVersion: Apache/2.4.57 (Debian) OpenSSL/3.0.11
ServerMPM: event
Server Built: 2023-04-13T13:42:52
CurrentTime: Wednesday, 02-Dec-2026 07:04:30 UTC
RestartTime: Tuesday, 01-Dec-2026 02:11:09 UTC
ParentServerConfigGeneration: 3
ParentServerMPMGeneration: 2
ServerUptimeSeconds: 104601
ServerUptime: 1 day 5 hours 3 minutes 21 seconds
Load1: 0.41
Load5: 0.37
Load15: 0.30
Total Accesses: 1873265
Total kBytes: 22913477
Total Duration: 95125812
CPUUser: 1210.53
CPUSystem: 733.84
CPUChildrenUser: 0
CPUChildrenSystem: 0
CPULoad: 1.85889
Uptime: 104601
ReqPerSec: 17.9087
BytesPerSec: 224318
BytesPerReq: 12525.5
DurationPerReq: 50.7807
BusyWorkers: 189
GracefulWorkers: 0
IdleWorkers: 130
Processes: 16
Stopping: 0
ConnsTotal: 212
ConnsAsyncWriting: 0
ConnsAsyncKeepAlive: 187
ConnsAsyncClosing: 3
Scoreboard: ._.__G_.I_LW__.._W_G._I_WI_II._W_G_K._G_IKG__IIW._G_I_WCG..RIR.KW_W_IKLC.RK__L._._C.__GI...CIR__WC__KIRK.._R.__C_WK_W..C__R.GW_.GW...W____WW_CI_WK__.G.I._L_RG...._C._W_WR__.___I_G_.__W._W..C__CRCCK___.WC_L_WL._G_LK_WL._.WGGL.WWW.WWLC.__WCWW.R.._W_WCW.WC_C.__.WC_.._.R.______IR_C._GG____L_.WW_WWKLWI.WG.__.RIL.L_G_LL_R_____C_G_.LLGC_G_WWW__LRG__R.LLWWRLGCLWLWGWR_._.R._W._WK__._W_RW_.C_W_.L...W.._._.G
]==]

local TOMCAT = [==[
OK - Listed applications for virtual host [localhost]
/:running:29:ROOT
/manager:running:28:manager
/host-manager:running:1:host-manager
/docs:running:24:docs
/examples:running:21:examples
/svc000:running:33:svc000
/svc001:running:39:svc001
/svc002:running:18:svc002
/svc003:running:32:svc003
/svc004:running:4:svc004
/svc005:running:7:svc005
/svc006:running:14:svc006
/svc007:running:6:svc007
/svc008:running:5:svc008
/svc009:running:16:svc009
/svc010:running:17:svc010
/svc011:running:2:svc011
/svc012:running:11:svc012
/svc013:running:17:svc013
/svc014:running:8:svc014
/svc015:running:27:svc015
/svc016:running:16:svc016
/svc017:running:25:svc017
/svc018:running:9:svc018
/svc019:running:34:svc019
/svc020:running:32:svc020
/svc021:running:36:svc021
/svc022:running:31:svc022
/svc023:running:20:svc023
/svc024:running:5:svc024
/svc025:running:17:svc025
/svc026:running:3:svc026
/svc027:running:11:svc027
/svc028:running:27:svc028
/svc029:running:4:svc029
/svc030:running:17:svc030
/svc031:running:1:svc031
/svc032:running:40:svc032
/svc033:running:5:svc033
/svc034:running:16:svc034
/svc035:running:5:svc035
/svc036:running:38:svc036
/svc037:running:14:svc037
/svc038:running:4:svc038
/svc039:running:16:svc039
/svc040:running:7:svc040
/svc041:running:29:svc041
/svc042:stopped:0:svc042
/svc043:running:21:svc043
/svc044:running:35:svc044
/svc045:running:26:svc045
/svc046:running:17:svc046
/svc047:running:39:svc047
/svc048:running:8:svc048
/svc049:running:2:svc049
/svc050:running:33:svc050
/svc051:running:15:svc051
/svc052:running:7:svc052
/svc053:running:10:svc053
/svc054:running:16:svc054
/svc055:running:3:svc055
/svc056:running:11:svc056
/svc057:running:12:svc057
/svc058:running:19:svc058
/svc059:running:40:svc059
/svc060:running:19:svc060
/svc061:running:33:svc061
/svc062:running:13:svc062
/svc063:running:18:svc063
/svc064:running:28:svc064
/svc065:running:32:svc065
/svc066:running:11:svc066
/svc067:running:17:svc067
/svc068:running:22:svc068
/svc069:running:1:svc069
/svc070:running:16:svc070
/svc071:running:2:svc071
/svc072:running:0:svc072
/svc073:running:1:svc073
/svc074:running:32:svc074
/svc075:running:35:svc075
/svc076:running:12:svc076
/svc077:running:32:svc077
/svc078:running:30:svc078
/svc079:running:15:svc079
/svc080:running:28:svc080
/svc081:running:6:svc081
/svc082:running:27:svc082
/svc083:running:31:svc083
/svc084:running:34:svc084
/svc085:running:25:svc085
/svc086:running:32:svc086
/svc087:running:19:svc087
/svc088:running:13:svc088
/svc089:running:14:svc089
/svc090:running:21:svc090
/svc091:running:12:svc091
/svc092:running:40:svc092
/svc093:running:8:svc093
/svc094:running:25:svc094
/svc095:running:22:svc095
/svc096:running:3:svc096
/svc097:running:8:svc097
/svc098:running:0:svc098
/svc099:running:4:svc099
/svc100:running:40:svc100
/svc101:running:16:svc101
/svc102:running:27:svc102
/svc103:running:10:svc103
/svc104:running:3:svc104
/svc105:running:5:svc105
/svc106:running:24:svc106
/svc107:running:32:svc107
/svc108:running:18:svc108
/svc109:running:38:svc109
/svc110:running:15:svc110
/svc111:running:18:svc111
/svc112:running:2:svc112
/svc113:running:29:svc113
/svc114:running:11:svc114
/svc115:running:10:svc115
/svc116:running:17:svc116
/svc117:running:28:svc117
/svc118:running:0:svc118
/svc119:running:16:svc119
/svc120:running:23:svc120
/svc121:running:21:svc121
/svc122:running:35:svc122
/svc123:running:20:svc123
/svc124:running:15:svc124
/svc125:running:2:svc125
/svc126:running:19:svc126
/svc127:running:13:svc127
/svc128:running:22:svc128
/svc129:running:11:svc129
/svc130:running:0:svc130
/svc131:running:21:svc131
/svc132:running:24:svc132
/svc133:running:5:svc133
/svc134:running:30:svc134
/svc135:running:17:svc135
/svc136:running:32:svc136
/svc137:running:12:svc137
/svc138:running:15:svc138
/svc139:running:32:svc139
/svc140:running:0:svc140
/svc141:running:5:svc141
/svc142:running:16:svc142
/svc143:running:5:svc143
/svc144:running:9:svc144
/svc145:running:25:svc145
/svc146:running:37:svc146
/svc147:running:2:svc147
/svc148:running:25:svc148
/svc149:running:1:svc149
/shop:running:19:shop
]==]

T.test("apache: idle workers from a real server-status?auto page", function()
  local web, asked = web_answering { ok = true, status = 200, body = APACHE }
  local p = web.apache { url = "http://127.0.0.1/server-status?auto", min_idle = 130, user = "mon", password = "pw" }
  T.eq(p.kind, "rule", "a Lua check")
  T.eq(p.name, "apache workers", "default name")
  T.eq(p.timeout, 6, "the request's timeout plus a second")
  T.eq(run(p), true, "130 idle, 130 needed")
  T.eq(asked[1].send_headers.Authorization, "Basic " .. web.base64("mon:pw"), "basic auth")
  local p2 = web.apache { url = "http://127.0.0.1/server-status?auto", min_idle = 131 }
  local ok, reason, evidence = run(p2)
  T.eq(ok, false, "131 needed")
  T.eq(reason, "130 idle workers (189 busy), fewer than 131", "reason")
  T.eq(evidence, APACHE, "the page is the evidence")
end)

T.test("apache: CRLF pages, the HTML page, errors", function()
  local web = web_answering { ok = true, status = 200, body = APACHE:gsub("\n", "\r\n") }
  T.eq(run(web.apache { url = "http://h/server-status?auto" }), true, "CRLF")
  web = web_answering { ok = true, status = 200, body = "<html><body><h1>Apache Server Status</h1><dt>130 requests currently being processed, 12 idle workers</dt></body></html>" }
  local ok, reason = run(web.apache { url = "http://h/server-status" })
  T.eq(ok, false, "the HTML page")
  T.eq(reason, "no IdleWorkers in the status page", "says why (use ?auto)")
  web = web_answering { ok = false, status = 403, reason = "Forbidden", body = "" }
  ok, reason = run(web.apache { url = "http://h/server-status?auto" })
  T.eq(ok, false, "403")
  T.eq(reason, "status 403: Forbidden", "status")
  web = web_answering { ok = false, status = 0, reason = "connection refused" }
  T.eq(select(2, run(web.apache { url = "http://h/server-status?auto" })), "connection refused", "no answer")
  web = web_answering { ok = true, status = 200, body = "BusyWorkers: 5\nIdleWorkers: 0\n" }
  T.eq(select(2, run(web.apache { url = "http://h/s?auto" })), "0 idle workers (5 busy), fewer than 1", "min_idle defaults to 1")
end)

T.test("tomcat: an application's state from a real manager list", function()
  local web, asked = web_answering { ok = true, status = 200, body = TOMCAT }
  local p = web.tomcat { url = "http://127.0.0.1:8080/manager/text/list", user = "monitor", password = "secret", app = "/shop", every = "30s", fails = 2 }
  T.eq(p.name, "tomcat /shop", "default name")
  T.eq(p.every, 30, "probe keys pass through")
  T.eq(p.fails, 2, "fails")
  T.eq(run(p), true, "/shop is running")
  T.eq(asked[1].url, "http://127.0.0.1:8080/manager/text/list", "url")
  T.eq(asked[1].timeout, 5, "default timeout")
  local ok, reason, evidence = run(web.tomcat { url = "http://h/m", app = "/svc042" })
  T.eq(ok, false, "a stopped app")
  T.eq(reason, "application /svc042 is stopped", "reason")
  T.contains(evidence, "/svc042:stopped:", "its line is the evidence")
  ok, reason = run(web.tomcat { url = "http://h/m", app = "/svc04" })
  T.eq(ok, false, "a prefix is not the app")
  T.eq(reason, "application /svc04 is not deployed", "not deployed")
  T.eq(run(web.tomcat { url = "http://h/m", app = "/" }), true, "ROOT")
  web = web_answering { ok = true, status = 200, body = TOMCAT:gsub("\n", "\r\n") }
  T.eq(run(web.tomcat { url = "http://h/m", app = "/shop" }), true, "CRLF")
  web = web_answering { ok = false, status = 401, reason = "Unauthorized", body = "" }
  T.eq(select(2, run(web.tomcat { url = "http://h/m", app = "/shop" })), "status 401: Unauthorized", "401")
end)

T.test("refusals with file:line", function()
  local web = web_answering { ok = true, body = "" }
  local cases = {
    { function() return web.tomcat { app = "/x" } end, "web.tomcat: 'url' is required" },
    { function() return web.tomcat { url = "http://h/" } end, "web.tomcat: 'app' is required" },
    { function() return web.tomcat { url = "http://h/", app = "/x", ap = 1 } end, "web.tomcat: unknown key 'ap'" },
    { function() return web.apache {} end, "web.apache: 'url' is required" },
    { function() return web.apache { url = "http://h/", min_idle = -1 } end, "web.apache.min_idle: -1 is out of range" },
    { function() return web.apache { url = "http://h/", timeout = "99999999999d" } end, "web.apache.timeout: duration" },
    { function() return web.apache { url = "http://h/", every = 1 / 0 } end, "probe.every: duration must be a finite number" },
    { function() return web.apache "http://h/" end, "web.apache: expected a table" },
  }
  for i, c in ipairs(cases) do
    local at = T.here() local err = T.refused(c[1], c[2], "case " .. i)
    T.contains(err, at .. ": ", "case " .. i .. " file:line")
  end
end)

T.test("base64", function()
  local web = web_answering { ok = true, body = "" }
  T.eq(web.base64(""), "", "empty")
  T.eq(web.base64("f"), "Zg==", "1")
  T.eq(web.base64("fo"), "Zm8=", "2")
  T.eq(web.base64("foo"), "Zm9v", "3")
  T.eq(web.base64("monitor:secret"), "bW9uaXRvcjpzZWNyZXQ=", "credentials")
end)
