// string.find, string.match, string.gmatch and string.gsub for rules, on
// Vigil's own implementation of Lua 5.4 patterns (manual §6.4.1: classes,
// sets, * + - ?, captures and position captures, %b, %f, anchors). It
// follows the stock matcher's algorithm and messages, and counts steps:
// every kCheckEvery steps it asks the budget (budget_check), which raises
// with the rule's file:line once the deadline has passed. The stock
// functions run inside one C call, where no hook fires, and a pattern like
// ("a*"):rep(10).."b" on 30 kB runs for minutes.
#include "lua/pattern.hpp"

#include <cctype>
#include <cstring>

#include "lua/runtime_internal.hpp"

namespace vigil {

namespace {

constexpr int kMaxCaptures = 32;  // LUA_MAXCAPTURES
constexpr int kMaxCalls = 200;    // MAXCCALLS: recursion depth of the matcher
constexpr int kCapUnfinished = -1;
constexpr int kCapPosition = -2;
constexpr char kEsc = '%';
constexpr const char* kSpecials = "^$*+?.([%-";
constexpr unsigned kCheckEvery = 4096;

struct MatchState {
  const char* src_init;
  const char* src_end;
  const char* p_end;
  lua_State* L;
  int matchdepth;
  unsigned char level;
  unsigned steps;          // since the last budget check
  unsigned long long total;  // all steps (differential tests give up past a limit)
  unsigned long long limit;  // 0: none
  struct {
    const char* init;
    ptrdiff_t len;
  } capture[kMaxCaptures];
};

void step(MatchState* ms) {
  ++ms->total;
  if (++ms->steps < kCheckEvery) return;
  ms->steps = 0;
  if (ms->limit) {  // a plain state (lua_pattern_differential): no runtime, no budget
    if (ms->total > ms->limit) luaL_error(ms->L, "pattern step limit reached");
    return;
  }
  budget_check(ms->L);
}

const char* match(MatchState* ms, const char* s, const char* p);

int check_capture(MatchState* ms, int l) {
  l -= '1';
  if (l < 0 || l >= ms->level || ms->capture[l].len == kCapUnfinished)
    return luaL_error(ms->L, "invalid capture index %%%d", l + 1);
  return l;
}

int capture_to_close(MatchState* ms) {
  int level = ms->level;
  for (level--; level >= 0; level--)
    if (ms->capture[level].len == kCapUnfinished) return level;
  return luaL_error(ms->L, "invalid pattern capture");
}

const char* class_end(MatchState* ms, const char* p) {
  switch (*p++) {
    case kEsc:
      if (p == ms->p_end) luaL_error(ms->L, "malformed pattern (ends with '%%')");
      return p + 1;
    case '[':
      if (*p == '^') p++;
      do {
        if (p == ms->p_end) luaL_error(ms->L, "malformed pattern (missing ']')");
        if (*(p++) == kEsc && p < ms->p_end) p++;
      } while (*p != ']');
      return p + 1;
    default: return p;
  }
}

bool single_class(int c, int cl) {
  bool res;
  switch (tolower(cl)) {
    case 'a': res = isalpha(c); break;
    case 'c': res = iscntrl(c); break;
    case 'd': res = isdigit(c); break;
    case 'g': res = isgraph(c); break;
    case 'l': res = islower(c); break;
    case 'p': res = ispunct(c); break;
    case 's': res = isspace(c); break;
    case 'u': res = isupper(c); break;
    case 'w': res = isalnum(c); break;
    case 'x': res = isxdigit(c); break;
    case 'z': res = c == 0; break;  // deprecated since 5.2, still in stock 5.4
    default: return cl == c;
  }
  if (isupper(cl)) res = !res;
  return res;
}

// p at '[', ec at its ']'.
bool match_set(int c, const char* p, const char* ec) {
  bool sig = true;
  if (*(p + 1) == '^') {
    sig = false;
    p++;
  }
  while (++p < ec) {
    if (*p == kEsc) {
      p++;
      if (single_class(c, static_cast<unsigned char>(*p))) return sig;
    } else if (*(p + 1) == '-' && (p + 2 < ec)) {
      p += 2;
      if (static_cast<unsigned char>(*(p - 2)) <= c && c <= static_cast<unsigned char>(*p))
        return sig;
    } else if (static_cast<unsigned char>(*p) == c) {
      return sig;
    }
  }
  return !sig;
}

bool single_match(MatchState* ms, const char* s, const char* p, const char* ep) {
  if (s >= ms->src_end) return false;
  int c = static_cast<unsigned char>(*s);
  switch (*p) {
    case '.': return true;
    case kEsc: return single_class(c, static_cast<unsigned char>(*(p + 1)));
    case '[': return match_set(c, p, ep - 1);
    default: return static_cast<unsigned char>(*p) == c;
  }
}

const char* match_balance(MatchState* ms, const char* s, const char* p) {
  if (p >= ms->p_end - 1) luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
  if (*s != *p) return nullptr;
  int b = *p;
  int e = *(p + 1);
  int cont = 1;
  while (++s < ms->src_end) {
    step(ms);
    if (*s == e) {
      if (--cont == 0) return s + 1;
    } else if (*s == b) {
      cont++;
    }
  }
  return nullptr;
}

const char* max_expand(MatchState* ms, const char* s, const char* p, const char* ep) {
  ptrdiff_t i = 0;
  while (single_match(ms, s + i, p, ep)) {
    step(ms);
    i++;
  }
  while (i >= 0) {  // try with the maximum repetitions, then fewer
    step(ms);
    const char* res = match(ms, (s + i), ep + 1);
    if (res) return res;
    i--;
  }
  return nullptr;
}

const char* min_expand(MatchState* ms, const char* s, const char* p, const char* ep) {
  for (;;) {
    step(ms);
    const char* res = match(ms, s, ep + 1);
    if (res != nullptr) return res;
    if (single_match(ms, s, p, ep))
      s++;
    else
      return nullptr;
  }
}

const char* start_capture(MatchState* ms, const char* s, const char* p, int what) {
  int level = ms->level;
  if (level >= kMaxCaptures) luaL_error(ms->L, "too many captures");
  ms->capture[level].init = s;
  ms->capture[level].len = what;
  ms->level = static_cast<unsigned char>(level + 1);
  const char* res = match(ms, s, p);
  if (res == nullptr) ms->level--;  // undo capture
  return res;
}

const char* end_capture(MatchState* ms, const char* s, const char* p) {
  int l = capture_to_close(ms);
  ms->capture[l].len = s - ms->capture[l].init;
  const char* res = match(ms, s, p);
  if (res == nullptr) ms->capture[l].len = kCapUnfinished;
  return res;
}

const char* match_capture(MatchState* ms, const char* s, int l) {
  l = check_capture(ms, l);
  size_t len = static_cast<size_t>(ms->capture[l].len);
  if (static_cast<size_t>(ms->src_end - s) >= len && memcmp(ms->capture[l].init, s, len) == 0)
    return s + len;
  return nullptr;
}

const char* match(MatchState* ms, const char* s, const char* p) {
  if (ms->matchdepth-- == 0) luaL_error(ms->L, "pattern too complex");
  step(ms);
init:
  if (p != ms->p_end) {
    switch (*p) {
      case '(':
        if (*(p + 1) == ')')
          s = start_capture(ms, s, p + 2, kCapPosition);
        else
          s = start_capture(ms, s, p + 1, kCapUnfinished);
        break;
      case ')': s = end_capture(ms, s, p + 1); break;
      case '$':
        if ((p + 1) != ms->p_end) goto dflt;
        s = (s == ms->src_end) ? s : nullptr;
        break;
      case kEsc:
        switch (*(p + 1)) {
          case 'b':
            s = match_balance(ms, s, p + 2);
            if (s != nullptr) {
              p += 4;
              goto init;
            }
            break;
          case 'f': {
            p += 2;
            if (*p != '[') luaL_error(ms->L, "missing '[' after '%%f' in pattern");
            const char* ep = class_end(ms, p);
            int previous = (s == ms->src_init) ? '\0' : static_cast<unsigned char>(*(s - 1));
            int current = (s < ms->src_end) ? static_cast<unsigned char>(*s) : '\0';
            if (!match_set(previous, p, ep - 1) && match_set(current, p, ep - 1)) {
              p = ep;
              goto init;
            }
            s = nullptr;
            break;
          }
          case '0': case '1': case '2': case '3': case '4':
          case '5': case '6': case '7': case '8': case '9':
            s = match_capture(ms, s, static_cast<unsigned char>(*(p + 1)));
            if (s != nullptr) {
              p += 2;
              goto init;
            }
            break;
          default: goto dflt;
        }
        break;
      default:
      dflt: {
        const char* ep = class_end(ms, p);
        if (!single_match(ms, s, p, ep)) {
          if (*ep == '*' || *ep == '?' || *ep == '-') {  // accept empty
            p = ep + 1;
            goto init;
          }
          s = nullptr;
        } else {
          switch (*ep) {
            case '?': {
              const char* res = match(ms, s + 1, ep + 1);
              if (res != nullptr) {
                s = res;
              } else {
                p = ep + 1;
                goto init;
              }
              break;
            }
            case '+': s = max_expand(ms, s + 1, p, ep); break;
            case '*': s = max_expand(ms, s, p, ep); break;
            case '-': s = min_expand(ms, s, p, ep); break;
            default:
              s++;
              p = ep;
              step(ms);
              goto init;
          }
        }
        break;
      }
    }
  }
  ms->matchdepth++;
  return s;
}

// Capture i (the whole match when there are none): its text in *cap and
// its length, or kCapPosition after pushing the position.
ptrdiff_t get_onecapture(MatchState* ms, int i, const char* s, const char* e, const char** cap) {
  if (i >= ms->level) {
    if (i != 0) luaL_error(ms->L, "invalid capture index %%%d", i + 1);
    *cap = s;
    return e - s;
  }
  ptrdiff_t capl = ms->capture[i].len;
  *cap = ms->capture[i].init;
  if (capl == kCapUnfinished) luaL_error(ms->L, "unfinished capture");
  if (capl == kCapPosition)
    lua_pushinteger(ms->L, (ms->capture[i].init - ms->src_init) + 1);
  return capl;
}

void push_onecapture(MatchState* ms, int i, const char* s, const char* e) {
  const char* cap;
  ptrdiff_t l = get_onecapture(ms, i, s, e, &cap);
  if (l != kCapPosition) lua_pushlstring(ms->L, cap, static_cast<size_t>(l));
}

int push_captures(MatchState* ms, const char* s, const char* e) {
  int nlevels = (ms->level == 0 && s) ? 1 : ms->level;
  luaL_checkstack(ms->L, nlevels, "too many captures");
  for (int i = 0; i < nlevels; i++) push_onecapture(ms, i, s, e);
  return nlevels;
}

bool no_specials(const char* p, size_t l) {
  size_t upto = 0;
  do {
    if (strpbrk(p + upto, kSpecials)) return false;
    upto += strlen(p + upto) + 1;  // may have more after \0
  } while (upto <= l);
  return true;
}

void prepstate(MatchState* ms, lua_State* L, const char* s, size_t ls, const char* p, size_t lp) {
  ms->L = L;
  ms->matchdepth = kMaxCalls;
  ms->src_init = s;
  ms->src_end = s + ls;
  ms->p_end = p + lp;
  ms->steps = 0;
  ms->total = 0;
  ms->limit = 0;
}

void reprepstate(MatchState* ms) {
  ms->level = 0;
}

size_t posrelat_start(lua_Integer pos, size_t len) {
  if (pos > 0) return static_cast<size_t>(pos);
  if (pos == 0) return 1;
  if (pos < -static_cast<lua_Integer>(len)) return 1;
  return len + static_cast<size_t>(pos) + 1;
}

const char* lmemfind(const char* s1, size_t l1, const char* s2, size_t l2) {
  if (l2 == 0) return s1;
  if (l2 > l1) return nullptr;
  const void* r = memmem(s1, l1, s2, l2);
  return static_cast<const char*>(r);
}

unsigned long long step_limit(lua_State* L) {
  return static_cast<unsigned long long>(lua_tointeger(L, lua_upvalueindex(1)));
}

int str_find_aux(lua_State* L, bool find) {
  size_t ls, lp;
  const char* s = luaL_checklstring(L, 1, &ls);
  const char* p = luaL_checklstring(L, 2, &lp);
  size_t init = posrelat_start(luaL_optinteger(L, 3, 1), ls) - 1;
  if (init > ls) {
    luaL_pushfail(L);
    return 1;
  }
  if (find && (lua_toboolean(L, 4) || no_specials(p, lp))) {
    const char* s2 = lmemfind(s + init, ls - init, p, lp);
    if (s2) {
      lua_pushinteger(L, (s2 - s) + 1);
      lua_pushinteger(L, static_cast<lua_Integer>((s2 - s) + lp));
      return 2;
    }
  } else {
    MatchState ms;
    const char* s1 = s + init;
    bool anchor = (*p == '^');
    if (anchor) {
      p++;
      lp--;
    }
    prepstate(&ms, L, s, ls, p, lp);
    ms.limit = step_limit(L);
    do {
      reprepstate(&ms);
      const char* e = match(&ms, s1, p);
      if (e != nullptr) {
        if (find) {
          lua_pushinteger(L, (s1 - s) + 1);
          lua_pushinteger(L, e - s);
          return push_captures(&ms, nullptr, nullptr) + 2;
        }
        return push_captures(&ms, s1, e);
      }
    } while (s1++ < ms.src_end && !anchor);
  }
  luaL_pushfail(L);
  return 1;
}

int str_find(lua_State* L) {
  return str_find_aux(L, true);
}

int str_match(lua_State* L) {
  return str_find_aux(L, false);
}

// gmatch state: a userdata (upvalue 3) after the subject and pattern.
struct GMatchState {
  const char* src;
  const char* p;
  const char* lastmatch;
  MatchState ms;
};

int gmatch_aux(lua_State* L) {
  auto* gm = static_cast<GMatchState*>(lua_touserdata(L, lua_upvalueindex(3)));
  gm->ms.L = L;
  for (const char* src = gm->src; src <= gm->ms.src_end; src++) {
    reprepstate(&gm->ms);
    const char* e = match(&gm->ms, src, gm->p);
    if (e != nullptr && e != gm->lastmatch) {
      gm->src = gm->lastmatch = e;
      return push_captures(&gm->ms, src, e);
    }
  }
  return 0;
}

int gmatch(lua_State* L) {
  size_t ls, lp;
  const char* s = luaL_checklstring(L, 1, &ls);
  const char* p = luaL_checklstring(L, 2, &lp);
  size_t init = posrelat_start(luaL_optinteger(L, 3, 1), ls) - 1;
  lua_settop(L, 2);
  auto* gm = static_cast<GMatchState*>(lua_newuserdatauv(L, sizeof(GMatchState), 0));
  if (init > ls) init = ls + 1;  // start after the end: no match
  prepstate(&gm->ms, L, s, ls, p, lp);
  gm->ms.limit = step_limit(L);
  gm->src = s + init;
  gm->p = p;
  gm->lastmatch = nullptr;
  lua_pushcclosure(L, gmatch_aux, 3);
  return 1;
}

void add_s(MatchState* ms, luaL_Buffer* b, const char* s, const char* e) {
  size_t l;
  lua_State* L = ms->L;
  const char* news = lua_tolstring(L, 3, &l);
  const char* p;
  while ((p = static_cast<const char*>(memchr(news, kEsc, l))) != nullptr) {
    luaL_addlstring(b, news, static_cast<size_t>(p - news));
    p++;
    if (*p == kEsc) {
      luaL_addchar(b, *p);
    } else if (*p == '0') {
      luaL_addlstring(b, s, static_cast<size_t>(e - s));
    } else if (isdigit(static_cast<unsigned char>(*p))) {
      const char* cap;
      ptrdiff_t resl = get_onecapture(ms, *p - '1', s, e, &cap);
      if (resl == kCapPosition)
        luaL_addvalue(b);
      else
        luaL_addlstring(b, cap, static_cast<size_t>(resl));
    } else {
      luaL_error(L, "invalid use of '%c' in replacement string", kEsc);
    }
    l -= static_cast<size_t>(p + 1 - news);
    news = p + 1;
  }
  luaL_addlstring(b, news, l);
}

// Returns whether it added something (false: keep the original text).
bool add_value(MatchState* ms, luaL_Buffer* b, const char* s, const char* e, int tr) {
  lua_State* L = ms->L;
  switch (tr) {
    case LUA_TFUNCTION: {
      lua_pushvalue(L, 3);
      int n = push_captures(ms, s, e);
      lua_call(L, n, 1);
      break;
    }
    case LUA_TTABLE:
      push_onecapture(ms, 0, s, e);
      lua_gettable(L, 3);
      break;
    default:
      add_s(ms, b, s, e);
      return true;
  }
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    luaL_addlstring(b, s, static_cast<size_t>(e - s));
    return false;
  }
  if (!lua_isstring(L, -1))
    return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  luaL_addvalue(b);
  return true;
}

int str_gsub(lua_State* L) {
  size_t srcl, lp;
  const char* src = luaL_checklstring(L, 1, &srcl);
  const char* p = luaL_checklstring(L, 2, &lp);
  const char* lastmatch = nullptr;
  int tr = lua_type(L, 3);
  lua_Integer max_s = luaL_optinteger(L, 4, static_cast<lua_Integer>(srcl) + 1);
  bool anchor = (*p == '^');
  lua_Integer n = 0;
  bool changed = false;
  MatchState ms;
  luaL_Buffer b;
  luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION ||
                          tr == LUA_TTABLE,
                   3, "string/function/table");
  luaL_buffinit(L, &b);
  if (anchor) {
    p++;
    lp--;
  }
  prepstate(&ms, L, src, srcl, p, lp);
  ms.limit = step_limit(L);
  while (n < max_s) {
    reprepstate(&ms);
    const char* e = match(&ms, src, p);
    if (e != nullptr && e != lastmatch) {
      n++;
      changed = add_value(&ms, &b, src, e, tr) | changed;
      src = lastmatch = e;
    } else if (src < ms.src_end) {
      luaL_addchar(&b, *src++);
    } else {
      break;
    }
    if (anchor) break;
  }
  if (!changed) {
    lua_pushvalue(L, 1);
  } else {
    luaL_addlstring(&b, src, static_cast<size_t>(ms.src_end - src));
    luaL_pushresult(&b);
  }
  lua_pushinteger(L, n);
  return 2;
}

// Pushes a table with find, match, gmatch and gsub on this matcher;
// `limit` steps (0: none) make a call raise "pattern step limit reached".
void push_bounded(lua_State* L, lua_Integer limit) {
  lua_createtable(L, 0, 4);
  const std::pair<const char*, lua_CFunction> fns[] = {
      {"find", str_find}, {"match", str_match}, {"gmatch", gmatch}, {"gsub", str_gsub}};
  for (const auto& [name, f] : fns) {
    lua_pushinteger(L, limit);
    lua_pushcclosure(L, f, 1);
    lua_setfield(L, -2, name);
  }
}

// Compares the stock functions (string.*) with the bounded ones (the
// global `bounded`) on (pattern, subject) = ...; returns true, or false
// and what differed. Calls where the bounded matcher reaches its step
// limit are skipped: the stock one could run for minutes.
const char* kDifferential = R"(
local P, S = ...
local stock = { find = string.find, match = string.match, gmatch = string.gmatch, gsub = string.gsub }
local function pack(ok, ...) return { ok = ok, n = select('#', ...), ... } end
local function run(lib, name, ...)
  local f = lib[name]
  if name == 'gmatch' then
    return pack(pcall(function(...)
      local out, n = {}, 0
      for a, b, c in f(...) do
        n = n + 1
        out[n] = tostring(a) .. '|' .. tostring(b) .. '|' .. tostring(c)
        if n > 100 then break end
      end
      return table.concat(out, ';')
    end, ...))
  end
  return pack(pcall(f, ...))
end
local function show(r)
  local t = {}
  for i = 1, r.n do t[i] = string.format('%q', r[i]) end
  return tostring(r.ok) .. ' ' .. table.concat(t, ', ')
end
local calls = {
  { 'find', S, P }, { 'find', S, P, 2 }, { 'find', S, P, -3 }, { 'find', S, P, 1, true },
  { 'match', S, P }, { 'match', S, P, 3 }, { 'match', S, P, -2 },
  { 'gmatch', S, P }, { 'gmatch', S, P, 2 },
  { 'gsub', S, P, '<%0>' }, { 'gsub', S, P, '%1-%%' }, { 'gsub', S, P, 'x', 2 },
  { 'gsub', S, P, function(...) return select('#', ...) .. tostring((...)) end },
  { 'gsub', S, P, { a = 'A', [1] = 'one', b = false } },
}
for i, c in ipairs(calls) do
  local ours = run(bounded, table.unpack(c))
  if not (not ours.ok and tostring(ours[1]):find('pattern step limit reached', 1, true)) then
    local theirs = run(stock, table.unpack(c))
    local same = ours.ok == theirs.ok and ours.n == theirs.n
    for k = 1, ours.n do same = same and ours[k] == theirs[k] end
    if not same then
      return false, string.format('%s(%q, %q, ...) call %d: stock %s, vigil %s', c[1], S, P, i,
                                  show(theirs), show(ours))
    end
  end
end
return true
)";

}  // namespace

bool lua_pattern_differential(const std::string& pattern, const std::string& subject,
                              std::string* diff) {
  lua_State* L = luaL_newstate();
  if (!L) return true;
  luaL_openlibs(L);
  push_bounded(L, 2'000'000);
  lua_setglobal(L, "bounded");
  bool same = false;
  if (luaL_loadbufferx(L, kDifferential, strlen(kDifferential), "=differential", "t") == LUA_OK) {
    lua_pushlstring(L, pattern.data(), pattern.size());
    lua_pushlstring(L, subject.data(), subject.size());
    if (lua_pcall(L, 2, 2, 0) == LUA_OK) {
      same = lua_toboolean(L, -2);
      if (!same && diff && lua_isstring(L, -1)) *diff = lua_tostring(L, -1);
    } else if (diff) {
      *diff = lua_tostring(L, -1) ? lua_tostring(L, -1) : "differential failed";
    }
  }
  lua_close(L);
  return same;
}

double lua_plain_run_seconds(const std::string& code, std::string& error) {
  lua_State* L = luaL_newstate();
  if (!L) {
    error = "cannot create a Lua state";
    return -1;
  }
  luaL_openlibs(L);
  double seconds = -1;
  MonoTime t0 = MonoClock::now();
  if (luaL_loadbufferx(L, code.data(), code.size(), "=plain", "t") != LUA_OK ||
      lua_pcall(L, 0, 0, 0) != LUA_OK)
    error = lua_tostring(L, -1) ? lua_tostring(L, -1) : "error";
  else
    seconds = std::chrono::duration<double>(MonoClock::now() - t0).count();
  lua_close(L);
  return seconds;
}

void install_bounded_patterns(lua_State* L) {
  lua_getglobal(L, "string");  // also the strings' __index
  push_bounded(L, 0);
  for (const char* name : {"find", "match", "gmatch", "gsub"}) {
    lua_getfield(L, -1, name);
    lua_setfield(L, -3, name);
  }
  lua_pop(L, 2);
}

}  // namespace vigil
