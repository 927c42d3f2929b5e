// Two ways to write the same JSON value from one description of its
// fields: JsonTree builds an nlohmann::json (for callers that look into
// it: Lua's exec.info, explain, dumps), JsonText writes the text at once
// (for big replies such as `status` of a thousand watches, where building
// the tree, dumping it and freeing it cost several times the text
// itself). Both have the same calls, so a serializer written as a
// template over them cannot drift apart:
//
//   w.begin_object(); w.key("pid").num(42); w.key("name").str("api"); w.end_object();
//
// Strings are written as nlohmann's dump with error_handler_t::replace
// writes them: invalid UTF-8 becomes U+FFFD.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace vigil {

class JsonText {
 public:
  explicit JsonText(std::string& out) : out_(out) {}

  JsonText& key(std::string_view k) {
    sep();
    quote(k);
    out_ += ':';
    after_key_ = true;
    return *this;
  }
  void str(std::string_view s) {
    sep();
    quote(s);
  }
  void num(int64_t v) {
    sep();
    out_ += std::to_string(v);
  }
  void num(uint64_t v) {
    sep();
    out_ += std::to_string(v);
  }
  void num(int v) { num(static_cast<int64_t>(v)); }
  void num(double v);
  void boolean(bool b) {
    sep();
    out_ += b ? "true" : "false";
  }
  void null() {
    sep();
    out_ += "null";
  }
  // The next element of an array (or the value after key()) is written
  // by another JsonText on the same string: only the separator here.
  void element() { sep(); }
  // An already serialized JSON value.
  void raw(std::string_view json) {
    sep();
    out_ += json;
  }
  void value(const nlohmann::json& j) {
    raw(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  void begin_object() { open('{'); }
  void end_object() { close('}'); }
  void begin_array() { open('['); }
  void end_array() { close(']'); }

 private:
  void sep() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_.empty()) {
      if (!first_.back()) out_ += ',';
      first_.back() = false;
    }
  }
  void open(char c) {
    sep();
    out_ += c;
    first_.push_back(true);
  }
  void close(char c) {
    out_ += c;
    first_.pop_back();
  }
  void quote(std::string_view s);

  std::string& out_;
  std::vector<bool> first_;  // per open container: nothing written in it yet
  bool after_key_ = false;
};

class JsonTree {
 public:
  JsonTree& key(std::string_view k) {
    key_ = k;
    return *this;
  }
  void str(std::string_view s) { slot() = std::string(s); }
  void num(int64_t v) { slot() = v; }
  void num(uint64_t v) { slot() = v; }
  void num(int v) { slot() = v; }
  void num(double v) { slot() = v; }
  void boolean(bool b) { slot() = b; }
  void null() { slot() = nullptr; }
  void value(const nlohmann::json& j) { slot() = j; }
  void begin_object() { open(nlohmann::json::object()); }
  void end_object() { stack_.pop_back(); }
  void begin_array() { open(nlohmann::json::array()); }
  void end_array() { stack_.pop_back(); }

  nlohmann::json take() { return std::move(root_); }

 private:
  // Where the next value goes. Only the innermost open container grows,
  // so the pointers to the open ones stay valid.
  nlohmann::json& slot() {
    if (stack_.empty()) return root_;
    nlohmann::json& top = *stack_.back();
    if (top.is_object()) return top[key_];
    top.push_back(nullptr);
    return top.back();
  }
  void open(nlohmann::json empty) {
    nlohmann::json& s = slot();
    s = std::move(empty);
    stack_.push_back(&s);
  }

  nlohmann::json root_;
  std::vector<nlohmann::json*> stack_;
  std::string key_;
};

}  // namespace vigil
