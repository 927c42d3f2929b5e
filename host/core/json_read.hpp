// Reading JSON that came from outside (a reply on the control socket, a
// file on disk). nlohmann's operator[] on a const object asserts that the
// key is there: an abort with assertions on, a read past the end of the
// map without. field() reads a key the way such a reader needs: absent
// and null are the same, and a get<>() of the wrong type then throws
// json::type_error, which the reader handles ("unexpected reply").
#pragma once

#include <nlohmann/json.hpp>

namespace vigil {

inline const nlohmann::json& field(const nlohmann::json& o, const char* key) {
  static const nlohmann::json null;
  if (!o.is_object()) return null;
  auto it = o.find(key);
  return it == o.end() ? null : *it;
}

}  // namespace vigil
