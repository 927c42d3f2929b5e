// The base-library replacements of the rule sandbox. Each closes a way
// round a promise of the runtime:
// - the time budget: Lua runs __gc finalizers with hooks off (at any
//   allocation, at collectgarbage, at lua_close), so rules may not set
//   one, and never see a userdata's metatable (where they could put one);
//   coroutines are resumed through functions that carry the budget's
//   strict hook over to the thread that runs;
// - text only: load and require never load bytecode;
// - a state that is not live changes nothing: io writes are refused while
//   loading or checking;
// - nothing blocks the loop: every file the Lua layer opens (rule files,
//   require's search and load, io.open, io.lines) is opened O_NONBLOCK and
//   must be a regular file, checked before and after the open (a FIFO
//   blocks in open or read, a terminal or a socket in read, and /proc/kmsg
//   is a "regular" file whose read waits for the kernel unless the open
//   was non-blocking); no rule reads the daemon's stdin.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

#include "lua/runtime_internal.hpp"

namespace vigil {

namespace {

// Files the Lua layer may open: regular files, /dev/null, and directories
// where `dirs` (io.open reads one as stock Lua does: EISDIR). nullptr when
// acceptable, else why not (static text: callers raise with it).
const char* refusal(const struct stat& st, bool dirs) {
  if (S_ISREG(st.st_mode) || (dirs && S_ISDIR(st.st_mode))) return nullptr;
  if (S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3) return nullptr;
  if (S_ISFIFO(st.st_mode)) return "not a regular file (a FIFO)";
  if (S_ISSOCK(st.st_mode)) return "not a regular file (a socket)";
  if (S_ISCHR(st.st_mode)) return "not a regular file (a character device)";
  if (S_ISBLK(st.st_mode)) return "not a regular file (a block device)";
  if (S_ISDIR(st.st_mode)) return "not a regular file (a directory)";
  return "not a regular file";
}

// open(path, flags | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) of a file that
// refusal() accepts: the fd; -1 with errno when open failed; -2 with *why
// when refused. Looked at before the open (a device is never opened: for
// some, opening is an action) and after it (what was opened, should the
// path have changed in between). O_NONBLOCK stays on: reading a regular
// file ignores it, and a procfs file that would wait returns EAGAIN.
int open_nonblocking(const char* path, int flags, bool dirs, const char** why) {
  struct stat st;
  if (::stat(path, &st) == 0 && (*why = refusal(st, dirs)) != nullptr) return -2;
  int fd = ::open(path, flags | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0666);
  if (fd < 0) return -1;
  if (::fstat(fd, &st) != 0 || (*why = refusal(st, dirs)) != nullptr) {
    int e = errno;
    ::close(fd);
    if (!*why) {
      errno = e;
      return -1;
    }
    return -2;
  }
  return fd;
}

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
  lua_State* prev = b.running;
  b.running = co;
  if (b.expired || b.fired) budget_strict(co);  // after the switch: see Budget::fired
  int nres = 0;
  int status = lua_resume(co, L, narg, &nres);
  b.running = prev;
  if (b.expired || b.fired) budget_strict(L);
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
  lua_State* prev = b.running;
  b.running = co;
  if (b.expired || b.fired) budget_strict(co);
  int status = lua_resetthread(co);
  b.running = prev;
  if (b.expired || b.fired) budget_strict(L);
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

// A string chunk handed to the parser in pieces, with a budget check
// between them: parsing tens of megabytes is one long C call otherwise.
struct PieceReader {
  const char* data;
  size_t left;
};

const char* read_piece(lua_State* L, void* ud, size_t* size) {
  auto* r = static_cast<PieceReader*>(ud);
  if (r->left == 0) return nullptr;
  budget_check(L);  // raises inside lua_load, which returns it as the error
  constexpr size_t kPiece = 64 * 1024;
  *size = r->left < kPiece ? r->left : kPiece;
  const char* p = r->data;
  r->data += *size;
  r->left -= *size;
  return p;
}

// load(chunk [, chunkname [, mode [, env]]]): always mode "t". A string
// chunk is parsed piece by piece under the budget; a function chunk is
// the stock load's (its reader is rule code, under the hook).
// Upvalue: the stock load.
int l_load(lua_State* L) {
  if (lua_type(L, 1) == LUA_TSTRING) {
    size_t len;
    const char* s = lua_tolstring(L, 1, &len);
    const char* name = luaL_optstring(L, 2, s);
    int env = lua_isnone(L, 4) ? 0 : 4;
    PieceReader reader{s, len};
    if (lua_load(L, read_piece, &reader, name, "t") != LUA_OK) {
      luaL_pushfail(L);
      lua_insert(L, -2);
      return 2;
    }
    if (env != 0) {
      lua_pushvalue(L, env);
      if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
    }
    return 1;
  }
  if (lua_gettop(L) < 3) lua_settop(L, 3);  // env stays absent: _ENV is the globals
  lua_pushliteral(L, "t");
  lua_replace(L, 3);
  return call_original(L);
}

// A file handed to the parser in pieces, with a budget check between
// them (luaL_loadfilex parses a file in one C call).
struct FileReader {
  FILE* f;
  bool first_line = false;  // a '#' line was skipped: give its newline back
  int first = EOF;          // the character read ahead, if any
  char buf[64 * 1024];
};

const char* read_file_piece(lua_State* L, void* ud, size_t* size) {
  auto* r = static_cast<FileReader*>(ud);
  size_t n = 0;
  if (r->first_line) {
    r->buf[n++] = '\n';
    r->first_line = false;
  }
  if (r->first != EOF) {
    r->buf[n++] = static_cast<char>(r->first);
    r->first = EOF;
  }
  if (n == 0) {
    budget_check(L);  // raises inside lua_load, which returns it as the error
    if (feof(r->f)) return nullptr;
    n = fread(r->buf, 1, sizeof r->buf, r->f);
  }
  *size = n;
  return n ? r->buf : nullptr;
}

}  // namespace

// luaL_loadfilex(L, filename, "t") with the same chunk name, BOM and '#'
// line handling and error messages, parsed piece by piece under the budget.
int load_text_file(lua_State* L, const char* filename) {
  lua_pushfstring(L, "@%s", filename);
  int name = lua_gettop(L);
  auto* r = new (std::nothrow) FileReader;
  const char* why = r ? nullptr : "out of memory";
  FILE* f = nullptr;
  if (r) {
    int fd = open_nonblocking(filename, O_RDONLY, false, &why);
    if (fd == -1) why = strerror(errno);
    if (fd >= 0 && !(f = fdopen(fd, "r"))) {
      why = strerror(errno);
      ::close(fd);
    }
  }
  if (!f) {
    delete r;
    lua_pushfstring(L, "cannot open %s: %s", filename, why);
    lua_remove(L, name);
    return LUA_ERRFILE;
  }
  r->f = f;
  int c = getc(f);
  if (c == 0xEF && getc(f) == 0xBB && getc(f) == 0xBF) c = getc(f);  // a UTF-8 BOM
  if (c == '#') {
    do c = getc(f);
    while (c != EOF && c != '\n');
    r->first_line = true;
    c = getc(f);
  }
  r->first = c;
  int status = lua_load(L, read_file_piece, r, lua_tostring(L, name), "t");
  bool read_error = ferror(f) != 0;
  fclose(f);
  delete r;
  if (read_error && status == LUA_OK) {
    lua_pop(L, 1);
    lua_pushfstring(L, "cannot read %s", filename);
    status = LUA_ERRFILE;
  }
  lua_remove(L, name);
  return status;
}

namespace {

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

// package.searchpath(name, path [, sep [, rep]]): the stock function
// (the same result and "no file" list), except that it opens nothing that
// is not a regular file (a FIFO or a device counts as found: the loader
// then refuses it, naming it) and checks the budget every 256 templates
// (a path of millions of them is millions of open calls).
bool readable(const char* filename) {
  const char* why;
  int fd = open_nonblocking(filename, O_RDONLY, false, &why);
  if (fd >= 0) ::close(fd);
  return fd != -1;  // opened, or there and refused (-2)
}

int l_searchpath(lua_State* L) {
  const char* name = luaL_checkstring(L, 1);
  size_t len;
  const char* path = luaL_checklstring(L, 2, &len);
  const char* sep = luaL_optstring(L, 3, ".");
  const char* dirsep = luaL_optstring(L, 4, "/");
  if (*sep != '\0' && strchr(name, *sep) != nullptr) name = luaL_gsub(L, name, sep, dirsep);
  // One template at a time: '?' replaced in that template only, so the
  // work before the first budget check is one template's, not a gsub of
  // the whole path (strstr on what is left, per '?', is quadratic under
  // ASan's string checks). The "no file" list is built as it goes.
  luaL_Buffer tried_list;
  luaL_buffinit(L, &tried_list);
  const char* end = path + len;
  unsigned tried = 0;
  for (const char* p = path; p <= end;) {
    const char* q = static_cast<const char*>(memchr(p, ';', static_cast<size_t>(end - p)));
    if (!q) q = end;
    lua_pushlstring(L, p, static_cast<size_t>(q - p));
    const char* file = luaL_gsub(L, lua_tostring(L, -1), "?", name);
    if (readable(file)) return 1;
    lua_pushfstring(L, tried ? "\n\tno file '%s'" : "no file '%s'", file);
    lua_replace(L, -3);
    lua_pop(L, 1);
    luaL_addvalue(&tried_list);  // balanced: the buffer's slots are below
    if (++tried % 256 == 0) budget_check(L);
    p = q + 1;
  }
  luaL_pushresult(&tried_list);
  luaL_pushfail(L);
  lua_insert(L, -2);
  return 2;
}

// package.searchers[2]: the stock Lua-file searcher (package.path,
// package.searchpath, the same "no file" list), loading text only. A load
// error is one line naming the requiring rule's line and the file.
// Upvalue: package.
int l_text_searcher(lua_State* L) {
  luaL_checkstring(L, 1);
  lua_getfield(L, lua_upvalueindex(1), "path");
  if (!lua_isstring(L, -1)) return luaL_error(L, "'package.path' must be a string");
  lua_pushcfunction(L, l_searchpath);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -3);
  lua_call(L, 2, 2);
  if (lua_isnil(L, -2)) return 1;  // the "no file ..." list
  lua_pop(L, 1);
  int file = lua_gettop(L);
  if (load_text_file(L, lua_tostring(L, file)) == LUA_OK) {
    lua_pushvalue(L, file);
    return 2;
  }
  push_lua_where(L);
  lua_pushfstring(L, "error loading module '%s' from file '%s': %s", lua_tostring(L, 1),
                  lua_tostring(L, file), lua_tostring(L, -2));
  lua_concat(L, 2);
  return lua_error(L);
}

// Files for rules: io.open and io.lines make their handles themselves
// (a luaL_Stream, as liolib does) on a descriptor from open_nonblocking,
// so that the stock methods (read, lines, seek, close, ...) work on them.
int close_stream(lua_State* L) {
  auto* p = static_cast<luaL_Stream*>(luaL_checkudata(L, 1, LUA_FILEHANDLE));
  errno = 0;
  return luaL_fileresult(L, fclose(p->f) == 0, nullptr);
}

// The open flags of an fopen mode ("r", "w", "a", an optional "+", then
// only "b"s, as liolib checks it); -1 when invalid.
int open_flags(const char* mode) {
  int flags;
  switch (*mode++) {
    case 'r': flags = O_RDONLY; break;
    case 'w': flags = O_WRONLY | O_CREAT | O_TRUNC; break;
    case 'a': flags = O_WRONLY | O_CREAT | O_APPEND; break;
    default: return -1;
  }
  if (*mode == '+') {
    flags = (flags & ~O_ACCMODE) | O_RDWR;
    mode++;
  }
  return strspn(mode, "b") == strlen(mode) ? flags : -1;
}

// Pushes a file handle for path opened with mode: 1 (the handle), or 0
// with *why (a refusal) or errno set (open failed); the pushed handle is
// closed then.
int push_file(lua_State* L, const char* path, const char* mode, int flags, const char** why) {
  auto* p = static_cast<luaL_Stream*>(lua_newuserdatauv(L, sizeof(luaL_Stream), 0));
  p->f = nullptr;
  p->closef = nullptr;  // closed until opened
  luaL_setmetatable(L, LUA_FILEHANDLE);
  *why = nullptr;
  int fd = open_nonblocking(path, flags, true, why);
  if (fd < 0) return 0;
  p->f = fdopen(fd, mode);
  if (!p->f) {
    int e = errno;
    ::close(fd);
    errno = e;
    return 0;
  }
  p->closef = close_stream;
  return 1;
}

// io.open(path [, mode]): write, append and update modes only in a live
// state; only what open_nonblocking accepts.
int l_io_open(lua_State* L) {
  const char* path = luaL_checkstring(L, 1);
  const char* mode = luaL_optstring(L, 2, "r");
  int flags = open_flags(mode);
  luaL_argcheck(L, flags != -1, 2, "invalid mode");
  if (strpbrk(mode, "wa+") != nullptr && !runtime_of(L).live) {
    lua_pushfstring(L, "io.open('%s', '%s')", path, mode);
    require_live(L, lua_tostring(L, -1));
  }
  const char* why;
  if (push_file(L, path, mode, flags, &why)) return 1;
  if (!why) return luaL_fileresult(L, 0, path);
  luaL_pushfail(L);
  lua_pushfstring(L, "%s: %s", path, why);
  return 2;
}

// io.lines(path, ...) iterator: upvalue 1 the file's own lines iterator,
// upvalue 2 the file, closed at the end as io.lines does.
int l_lines_next(lua_State* L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_call(L, 0, LUA_MULTRET);
  if (lua_gettop(L) > 0 && lua_toboolean(L, 1)) return lua_gettop(L);
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(2));
  auto* p = static_cast<luaL_Stream*>(luaL_checkudata(L, 1, LUA_FILEHANDLE));
  if (p->closef) {
    lua_CFunction close = p->closef;
    p->closef = nullptr;
    close(L);
  }
  return 0;
}

// io.lines(path, ...): a file, never vigil's stdin; only what
// open_nonblocking accepts. Returns the iterator, nil, nil and the file
// (closed when a for loop leaves early), as stock Lua 5.4.
int l_io_lines(lua_State* L) {
  if (lua_isnoneornil(L, 1))
    return luaL_error(L, "io.lines() without a file name reads vigil's standard input: name a file");
  const char* path = luaL_checkstring(L, 1);
  const char* why;
  if (!push_file(L, path, "r", O_RDONLY, &why))
    return luaL_error(L, "cannot open file '%s': %s", path, why ? why : strerror(errno));
  lua_replace(L, 1);  // the file in the name's place: file, formats...
  int n = lua_gettop(L);
  lua_getfield(L, 1, "lines");
  lua_insert(L, 1);
  lua_pushvalue(L, 2);
  lua_insert(L, 1);  // file, file:lines, file, formats...
  lua_call(L, n, 1);
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, l_lines_next, 2);
  lua_pushnil(L);
  lua_pushnil(L);
  lua_pushvalue(L, 1);
  return 4;
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
  lua_pushcfunction(L, l_searchpath);
  lua_setfield(L, -2, "searchpath");
  lua_getfield(L, -1, "searchers");
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, l_text_searcher, 1);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 2);

  lua_getglobal(L, "io");
  lua_pushcfunction(L, l_io_open);
  lua_setfield(L, -2, "open");
  lua_pushcfunction(L, l_io_lines);
  lua_setfield(L, -2, "lines");
  replace(L, -1, "write", l_io_write);
  lua_pushcfunction(L, l_io_read);
  lua_setfield(L, -2, "read");
  lua_pop(L, 1);
  luaL_getmetatable(L, LUA_FILEHANDLE);
  if (lua_getfield(L, -1, "__index") == LUA_TTABLE) replace(L, -1, "write", l_file_write);
  lua_pop(L, 2);
}

}  // namespace vigil
