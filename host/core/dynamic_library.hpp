// DynamicLibrary: a shared library loaded (dlopen) when it is first needed
// instead of linked, for the heavy optional stacks (libcurl, OpenSSL) that a
// daemon not using them must not carry in its resident size. The caller
// keeps a table (a struct of function pointers) filled by bind() in a
// function-local static, so the library is loaded once per process and
// never unloaded (the pointers outlive any handle).
#pragma once

#include <string>

namespace vigil {

class DynamicLibrary {
 public:
  // dlopen(soname, RTLD_NOW | RTLD_LOCAL); error() says why it failed.
  explicit DynamicLibrary(const char* soname);

  // Resolves `symbol` into fn (nullptr when missing). The first failure,
  // loading or a missing symbol, is what error() reports.
  template <class Fn>
  void bind(Fn*& fn, const char* symbol) {
    fn = reinterpret_cast<Fn*>(find(symbol));
  }

  bool ok() const { return error_.empty(); }
  // "cannot load libssl.so.3: <dlerror>", "libssl.so.3 has no SSL_new".
  const std::string& error() const { return error_; }

 private:
  void* find(const char* symbol);

  std::string soname_;
  void* handle_ = nullptr;  // deliberately never dlclose'd
  std::string error_;
};

}  // namespace vigil
