#include "host/core/dynamic_library.hpp"

#include <dlfcn.h>

namespace vigil {

DynamicLibrary::DynamicLibrary(const char* soname) : soname_(soname) {
  handle_ = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (!handle_) {
    const char* why = dlerror();
    error_ = "cannot load " + soname_ + ": " + (why ? why : "dlopen failed");
  }
}

void* DynamicLibrary::find(const char* symbol) {
  if (!handle_) return nullptr;
  void* p = dlsym(handle_, symbol);
  if (!p && error_.empty()) error_ = soname_ + " has no " + symbol;
  return p;
}

}  // namespace vigil
