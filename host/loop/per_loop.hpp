// per_loop<T>(loop): the one T of an EventLoop, shared by its users
// (HttpClient::for_loop, Resolver::for_loop). Made at the first call and
// kept alive by the shared_ptrs handed out, so it goes away with its last
// user, before the loop does. Single-threaded, like the loop.
#pragma once

#include <memory>
#include <unordered_map>

#include "host/loop/event_loop.hpp"

namespace vigil {

template <class T>
std::shared_ptr<T> per_loop(EventLoop& loop) {
  static std::unordered_map<EventLoop*, std::weak_ptr<T>> shared;
  std::erase_if(shared, [](const auto& kv) { return kv.second.expired(); });
  if (auto existing = shared[&loop].lock()) return existing;
  auto made = std::make_shared<T>(loop);
  shared[&loop] = made;
  return made;
}

}  // namespace vigil
