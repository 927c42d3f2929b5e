// The standard library functions whose work a rule sizes with a count and
// that do it inside one C call, without calling a Lua function on the way:
// no hook can fire inside them, so the stock ones escaped the time budget
// (string.rep("", math.maxinteger) and table.move({}, 1, math.maxinteger
// - 1, 2) loop 2^63 times; table.insert and table.remove loop up to a
// length that __len chooses; table.sort of a few million numbers takes
// seconds). These replacements behave as the stock 5.4 functions (same
// results, argument checks and messages) and call budget_check every
// kCheckEvery items, which raises with the rule's file:line once the
// deadline has passed.
//
// Not in this class, because they end within the memory cap or the stack
// limit: table.concat (stops at the first missing item; one through
// __index is a call, which the hook sees), table.unpack, string.byte,
// utf8.codepoint (at most about a million values), the other string
// functions (linear in a string the rule already has), string.pack
// (padding to a size is bounded by the memory cap).
// package.searchpath, which opens a file per template, is in sandbox.cpp.
#include <climits>
#include <cstring>

#include "lua/runtime_internal.hpp"

namespace vigil {

namespace {

constexpr unsigned kCheckEvery = 4096;

// string.rep(s, n [, sep]): one copy of s (and sep), then doubling copies
// of what is there, so n copies take log2(n) memcpy calls instead of n.
// Pieces that are both empty make "" at once, whatever n.
int l_rep(lua_State* L) {
  size_t l, lsep;
  const char* s = luaL_checklstring(L, 1, &l);
  lua_Integer n = luaL_checkinteger(L, 2);
  const char* sep = luaL_optlstring(L, 3, "", &lsep);
  if (n <= 0 || l + lsep == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  constexpr size_t kMaxSize = (sizeof(size_t) < sizeof(lua_Integer) ? ~size_t(0)
                                                                      : size_t(LUA_MAXINTEGER));
  if (l + lsep < l || l + lsep > kMaxSize / static_cast<size_t>(n))
    return luaL_error(L, "resulting string too large");
  size_t unit = l + lsep;
  size_t total = static_cast<size_t>(n) * l + static_cast<size_t>(n - 1) * lsep;
  luaL_Buffer b;
  char* p = luaL_buffinitsize(L, &b, total);
  memcpy(p, s, l);
  if (lsep > 0 && total > l) memcpy(p + l, sep, lsep < total - l ? lsep : total - l);
  size_t done = unit < total ? unit : total;  // whole units (the last one may lack its sep)
  constexpr size_t kChunk = 1u << 20;  // a budget check per MiB copied
  while (done < total) {
    size_t len = done < total - done ? done : total - done;
    if (len > kChunk) len = kChunk - kChunk % unit;
    if (len == 0) len = unit < total - done ? unit : total - done;
    memcpy(p + done, p, len);  // p starts with whole units: p[done..] repeats it
    done += len;
    budget_check(L);
  }
  luaL_pushresultsize(&b, total);
  return 1;
}

// The table library's argument check: a table, or a value with the
// metamethods the operation needs (TAB_R: __index, TAB_W: __newindex,
// TAB_L: __len).
constexpr int kTabR = 1, kTabW = 2, kTabL = 4;

bool has_metafield(lua_State* L, const char* key, int n) {
  lua_pushstring(L, key);
  return lua_rawget(L, -n) != LUA_TNIL;
}

void check_table(lua_State* L, int arg, int what) {
  if (lua_type(L, arg) == LUA_TTABLE) return;
  int n = 1;
  if (lua_getmetatable(L, arg) && (!(what & kTabR) || has_metafield(L, "__index", ++n)) &&
      (!(what & kTabW) || has_metafield(L, "__newindex", ++n)) &&
      (!(what & kTabL) || has_metafield(L, "__len", ++n))) {
    lua_pop(L, n);
    return;
  }
  luaL_checktype(L, arg, LUA_TTABLE);  // raises
}

lua_Integer checked_len(lua_State* L, int arg, int what) {
  check_table(L, arg, what | kTabL);
  return luaL_len(L, arg);
}

// Moves t[from] to t[to] for each of `count` positions, going up (step 1)
// or down (step -1) from the first, with a budget check every kCheckEvery.
// (Positions wrap around as unsigned numbers: a __len of math.maxinteger
// makes table.insert's first empty slot wrap, as in stock Lua.)
void move_items(lua_State* L, int src, lua_Integer from, int dst, lua_Integer to,
                lua_Unsigned count, int step) {
  auto f = static_cast<lua_Unsigned>(from), t = static_cast<lua_Unsigned>(to);
  auto d = static_cast<lua_Unsigned>(static_cast<lua_Integer>(step));
  for (lua_Unsigned i = 1; i <= count; ++i) {
    lua_geti(L, src, static_cast<lua_Integer>(f));
    lua_seti(L, dst, static_cast<lua_Integer>(t));
    f += d;
    t += d;
    if (i % kCheckEvery == 0) budget_check(L);
  }
}

// table.move(a1, f, e, t [, a2])
int l_move(lua_State* L) {
  lua_Integer f = luaL_checkinteger(L, 2);
  lua_Integer e = luaL_checkinteger(L, 3);
  lua_Integer t = luaL_checkinteger(L, 4);
  int tt = !lua_isnoneornil(L, 5) ? 5 : 1;
  check_table(L, 1, kTabR);
  check_table(L, tt, kTabW);
  if (e >= f) {
    luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3, "too many elements to move");
    lua_Integer n = e - f + 1;
    luaL_argcheck(L, t <= LUA_MAXINTEGER - n + 1, 4, "destination wrap around");
    if (t > e || t <= f || (tt != 1 && !lua_compare(L, 1, tt, LUA_OPEQ)))
      move_items(L, 1, f, tt, t, static_cast<lua_Unsigned>(n), 1);
    else  // overlapping, towards the end: from the last item down (t + n may overflow;
          // t + (n - 1) fits by the check above)
      move_items(L, 1, e, tt, t + (n - 1), static_cast<lua_Unsigned>(n), -1);
  }
  lua_pushvalue(L, tt);
  return 1;
}

// table.insert(t, [pos,] value)
int l_insert(lua_State* L) {
  lua_Integer e = checked_len(L, 1, kTabR | kTabW);
  e = static_cast<lua_Integer>(static_cast<lua_Unsigned>(e) + 1u);  // first empty slot
  lua_Integer pos;
  switch (lua_gettop(L)) {
    case 2: pos = e; break;
    case 3: {
      pos = luaL_checkinteger(L, 2);
      luaL_argcheck(L, static_cast<lua_Unsigned>(pos) - 1u < static_cast<lua_Unsigned>(e), 2,
                    "position out of bounds");
      // t[e] = t[e - 1], ..., t[pos + 1] = t[pos]
      move_items(L, 1, static_cast<lua_Integer>(static_cast<lua_Unsigned>(e) - 1u), 1, e,
                 static_cast<lua_Unsigned>(e) - static_cast<lua_Unsigned>(pos), -1);
      break;
    }
    default: return luaL_error(L, "wrong number of arguments to 'insert'");
  }
  lua_seti(L, 1, pos);
  return 0;
}

// table.remove(t [, pos])
int l_remove(lua_State* L) {
  lua_Integer size = checked_len(L, 1, kTabR | kTabW);
  lua_Integer pos = luaL_optinteger(L, 2, size);
  if (pos != size)
    luaL_argcheck(L, static_cast<lua_Unsigned>(pos) - 1u <= static_cast<lua_Unsigned>(size), 2,
                  "position out of bounds");
  lua_geti(L, 1, pos);
  if (pos < size)  // t[pos] = t[pos + 1], ..., t[size - 1] = t[size]
    move_items(L, 1, pos + 1, 1, pos,
               static_cast<lua_Unsigned>(size) - static_cast<lua_Unsigned>(pos), 1);
  lua_pushnil(L);
  lua_seti(L, 1, pos < size ? size : pos);
  return 1;
}

// table.sort(t [, comp]): a heapsort (n log n comparisons whatever the
// input, no recursion), with a budget check every kCheckEvery
// comparisons. Like the stock quicksort it is not stable; an order
// function that is not a strict order gives some permutation of the
// items rather than an error.
struct Sorter {
  lua_State* L;
  bool comp;  // an order function at index 2
  unsigned compared = 0;

  // t[a] < t[b], pushing nothing.
  bool less(lua_Integer a, lua_Integer b) {
    if (++compared % kCheckEvery == 0) budget_check(L);
    if (comp) {
      lua_pushvalue(L, 2);
      lua_geti(L, 1, a);
      lua_geti(L, 1, b);
      lua_call(L, 2, 1);
      bool r = lua_toboolean(L, -1);
      lua_pop(L, 1);
      return r;
    }
    lua_geti(L, 1, a);
    lua_geti(L, 1, b);
    bool r = lua_compare(L, -2, -1, LUA_OPLT);
    lua_pop(L, 2);
    return r;
  }

  void swap(lua_Integer a, lua_Integer b) {
    lua_geti(L, 1, a);
    lua_geti(L, 1, b);
    lua_seti(L, 1, a);
    lua_seti(L, 1, b);
  }

  // Sifts the item at `root` down the heap of items 1..end.
  void sift_down(lua_Integer root, lua_Integer end) {
    for (;;) {
      lua_Integer child = 2 * root;
      if (child > end) return;
      if (child + 1 <= end && less(child, child + 1)) ++child;
      if (!less(root, child)) return;
      swap(root, child);
      root = child;
    }
  }
};

int l_sort(lua_State* L) {
  lua_Integer n = checked_len(L, 1, kTabR | kTabW);
  if (n > 1) {
    luaL_argcheck(L, n < INT_MAX, 1, "array too big");
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    Sorter s{L, !lua_isnil(L, 2)};
    for (lua_Integer i = n / 2; i >= 1; --i) s.sift_down(i, n);
    for (lua_Integer end = n; end > 1; --end) {
      s.swap(1, end);
      s.sift_down(1, end - 1);
    }
  }
  return 0;
}

}  // namespace

void install_bounded_loops(lua_State* L) {
  lua_getglobal(L, "string");  // also the strings' __index
  lua_pushcfunction(L, l_rep);
  lua_setfield(L, -2, "rep");
  lua_pop(L, 1);
  lua_getglobal(L, "table");
  const std::pair<const char*, lua_CFunction> fns[] = {
      {"move", l_move}, {"insert", l_insert}, {"remove", l_remove}, {"sort", l_sort}};
  for (const auto& [name, f] : fns) {
    lua_pushcfunction(L, f);
    lua_setfield(L, -2, name);
  }
  lua_pop(L, 1);
}

}  // namespace vigil
