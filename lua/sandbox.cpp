// The base-library replacements of the rule sandbox. Each closes a way
// round a promise of the runtime:
// - the time budget: Lua runs __gc finalizers with hooks off (at any
//   allocation, at collectgarbage, at lua_close), so rules may not set
//   one, and never see a userdata's metatable (where they could put one);
//   coroutines are resumed through functions that carry the budget's
//   strict hook over to the thread that runs;
// - text only: load and require never load bytecode;
// - a state that is not live changes nothing: io writes are refused while
//   loading or checking, and no rule reads the daemon's stdin or blocks
//   on a FIFO or a terminal.
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstring>

#include "lua/runtime_internal.hpp"

namespace vigil {

namespace {

// Calls upvalue 1 with this call's arguments and returns its results.
int call_original(lua_State* L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

// setmetatable(t, mt): the stock function, refusing a __gc field.
int l_setmetatable(lua_State* L) {
  int t = lua_type(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
  if (t == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL)
      return luaL_error(L,
                        "setmetatable: __gc is not allowed in rules (Lua runs finalizers outside "
                        "the time budget)");
    lua_pop(L, 1);
  }
  if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
    return luaL_error(L, "cannot change a protected metatable");
  lua_settop(L, 2);
  lua_setmetatable(L, 1);
  return 1;
}

// getmetatable(v): the stock function, except that a userdata's metatable
// (a file handle's, a host handle's) is never returned: false instead,
// as for a protected metatable.
int l_getmetatable(lua_State* L) {
  luaL_checkany(L, 1);
  if (!lua_getmetatable(L, 1)) {
    lua_pushnil(L);
    return 1;
  }
  if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL) return 1;
  if (lua_type(L, 1) == LUA_TUSERDATA) lua_pushboolean(L, 0);
  return 1;
}

// xpcall(f, handler, ...): the stock function, with the rule's handler
// behind a C one that stops calling it once the budget has expired. Lua
// calls a message handler with hooks off when the error came from a hook
// (the budget's cut), so a handler that loops would run unbounded.
int l_xpcall_handler(lua_State* L) {
  if (runtime_of(L).budget.expired) return 1;  // the cut, as it is
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

int finish_xpcall(lua_State* L, int status, lua_KContext extra) {
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_pushboolean(L, 0);
    lua_pushvalue(L, -2);
    return 2;
  }
  return lua_gettop(L) - static_cast<int>(extra);
}

int l_xpcall(lua_State* L) {
  int n = lua_gettop(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, l_xpcall_handler, 1);
  lua_replace(L, 2);
  lua_pushboolean(L, 1);
  lua_pushvalue(L, 1);
  lua_rotate(L, 3, 2);
  int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, finish_xpcall);
  return finish_xpcall(L, status, 2);
}

// Coroutines. Hooks are per thread: the budget follows the running thread
// (Budget::running, which the deadline timer's signal hooks), and once it
// has expired every thread that runs gets the strict hook.

// Resumes co with narg values from L: results moved to L (>= 0), or -1
// with the error on L. Never raises, so Budget::running is always put back.
int resume(lua_State* L, lua_State* co, int narg) {
  Budget& b = runtime_of(L).budget;
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  lua_xmove(L, co, narg);
  if (b.expired) budget_strict(co);
  lua_State* prev = b.running;
  b.running = co;
  int nres = 0;
  int status = lua_resume(co, L, narg, &nres);
  b.running = prev;
  if (b.expired) budget_strict(L);
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      return -1;
    }
    lua_xmove(co, L, nres);
    return nres;
  }
  lua_xmove(co, L, 1);
  return -1;
}

// Closes co's pending to-be-closed variables (their __close run in co).
int reset_thread(lua_State* L, lua_State* co) {
  Budget& b = runtime_of(L).budget;
  if (b.expired) budget_strict(co);
  lua_State* prev = b.running;
  b.running = co;
  int status = lua_resetthread(co);
  b.running = prev;
  if (b.expired) budget_strict(L);
  return status;
}

lua_State* check_coroutine(lua_State* L) {
  lua_State* co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  return co;
}

int l_resume(lua_State* L) {
  lua_State* co = check_coroutine(L);
  int r = resume(L, co, lua_gettop(L) - 1);
  if (r < 0) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(r + 1));
  return r + 1;
}

int l_wrapped(lua_State* L) {
  lua_State* co = lua_tothread(L, lua_upvalueindex(1));
  int r = resume(L, co, lua_gettop(L));
  if (r >= 0) return r;
  int stat = lua_status(co);
  if (stat != LUA_OK && stat != LUA_YIELD) {  // the coroutine failed
    stat = reset_thread(L, co);
    lua_xmove(co, L, 1);
  }
  if (stat != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

int l_wrap(lua_State* L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State* co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, l_wrapped, 1);
  return 1;
}

int l_close(lua_State* L) {
  lua_State* co = check_coroutine(L);
  const char* state = nullptr;
  if (co == L) {
    state = "running";
  } else if (lua_status(co) == LUA_OK) {
    lua_Debug ar;
    if (lua_getstack(co, 0, &ar)) state = "normal";  // it resumed someone
  }
  if (state) return luaL_error(L, "cannot close a %s coroutine", state);
  int status = reset_thread(L, co);
  if (status == LUA_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_xmove(co, L, 1);
  return 2;
}

// load(chunk [, chunkname [, mode [, env]]]): always mode "t".
int l_load(lua_State* L) {
  if (lua_gettop(L) < 3) lua_settop(L, 3);  // env stays absent: _ENV is the globals
  lua_pushliteral(L, "t");
  lua_replace(L, 3);
  return call_original(L);
}

// "file:line" of the innermost Lua frame, or "".
void push_lua_where(lua_State* L) {
  lua_Debug ar;
  for (int level = 1; lua_getstack(L, level, &ar); ++level) {
    if (lua_getinfo(L, "Sl", &ar) && ar.currentline >= 0) {
      lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
      return;
    }
  }
  lua_pushliteral(L, "");
}

// package.searchers[2]: the stock Lua-file searcher (package.path,
// package.searchpath, the same "no file" list), loading text only. A load
// error is one line naming the requiring rule's line and the file.
// Upvalues: package, the stock package.searchpath.
int l_text_searcher(lua_State* L) {
  luaL_checkstring(L, 1);
  lua_getfield(L, lua_upvalueindex(1), "path");
  if (!lua_isstring(L, -1)) return luaL_error(L, "'package.path' must be a string");
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -3);
  lua_call(L, 2, 2);
  if (lua_isnil(L, -2)) return 1;  // the "no file ..." list
  lua_pop(L, 1);
  int file = lua_gettop(L);
  if (luaL_loadfilex(L, lua_tostring(L, file), "t") == LUA_OK) {
    lua_pushvalue(L, file);
    return 2;
  }
  push_lua_where(L);
  lua_pushfstring(L, "error loading module '%s' from file '%s': %s", lua_tostring(L, 1),
                  lua_tostring(L, file), lua_tostring(L, -2));
  lua_concat(L, 2);
  return lua_error(L);
}

// Files rules may open: regular files (or ones not there yet), and the
// memory devices that never block. A FIFO, a terminal or a socket would
// block the loop in open or read, out of the budget's reach.
const char* not_openable(const char* path) {
  struct stat st;
  if (::stat(path, &st) != 0) return nullptr;  // io.open reports it
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) return nullptr;
  if (S_ISCHR(st.st_mode) && major(st.st_rdev) == 1) {
    unsigned m = minor(st.st_rdev);
    if (m == 3 || m == 5 || m == 7 || m == 8 || m == 9) return nullptr;  // null zero full random urandom
  }
  return "not a regular file (rules may open regular files only)";
}

// io.open(path [, mode]): write, append and update modes only in a live
// state; never a FIFO, terminal or socket. Upvalue: the stock io.open.
int l_io_open(lua_State* L) {
  const char* path = luaL_checkstring(L, 1);
  const char* mode = luaL_optstring(L, 2, "r");
  if (strpbrk(mode, "wa+") != nullptr && !runtime_of(L).live) {
    lua_pushfstring(L, "io.open('%s', '%s')", path, mode);
    require_live(L, lua_tostring(L, -1));
  }
  if (const char* why = not_openable(path)) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, why);
    return 2;
  }
  return call_original(L);
}

// io.lines(path, ...): a file, never vigil's stdin. Upvalue: the stock one.
int l_io_lines(lua_State* L) {
  if (lua_isnoneornil(L, 1))
    return luaL_error(L, "io.lines() without a file name reads vigil's standard input: name a file");
  const char* path = luaL_checkstring(L, 1);
  if (const char* why = not_openable(path))
    return luaL_error(L, "cannot open file '%s' (%s)", path, why);
  return call_original(L);
}

int l_io_read(lua_State* L) {
  return luaL_error(L,
                    "io.read reads vigil's standard input, which rules cannot use: read a file "
                    "opened with io.open");
}

// io.write and file:write: only in a live state. Upvalue: the stock one.
int l_io_write(lua_State* L) {
  require_live(L, "io.write");
  return call_original(L);
}

int l_file_write(lua_State* L) {
  require_live(L, "file:write");
  return call_original(L);
}

void replace(lua_State* L, int table, const char* name, lua_CFunction f) {
  table = lua_absindex(L, table);
  lua_getfield(L, table, name);
  lua_pushcclosure(L, f, 1);
  lua_setfield(L, table, name);
}

}  // namespace

void harden_base(lua_State* L) {
  lua_pushcfunction(L, l_setmetatable);
  lua_setglobal(L, "setmetatable");
  lua_pushcfunction(L, l_getmetatable);
  lua_setglobal(L, "getmetatable");
  lua_pushcfunction(L, l_xpcall);
  lua_setglobal(L, "xpcall");
  lua_getglobal(L, "load");
  lua_pushcclosure(L, l_load, 1);
  lua_setglobal(L, "load");

  lua_getglobal(L, "coroutine");
  lua_pushcfunction(L, l_resume);
  lua_setfield(L, -2, "resume");
  lua_pushcfunction(L, l_wrap);
  lua_setfield(L, -2, "wrap");
  lua_pushcfunction(L, l_close);
  lua_setfield(L, -2, "close");
  lua_pop(L, 1);

  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchers");
  lua_pushvalue(L, -2);
  lua_getfield(L, -3, "searchpath");
  lua_pushcclosure(L, l_text_searcher, 2);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 2);

  lua_getglobal(L, "io");
  replace(L, -1, "open", l_io_open);
  replace(L, -1, "lines", l_io_lines);
  replace(L, -1, "write", l_io_write);
  lua_pushcfunction(L, l_io_read);
  lua_setfield(L, -2, "read");
  lua_pop(L, 1);
  luaL_getmetatable(L, LUA_FILEHANDLE);
  if (lua_getfield(L, -1, "__index") == LUA_TTABLE) replace(L, -1, "write", l_file_write);
  lua_pop(L, 2);
}

}  // namespace vigil
