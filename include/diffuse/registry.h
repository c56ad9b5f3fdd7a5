// SPDX-License-Identifier: Apache-2.0
// Name -> factory registries for samplers, schedules, spacings, guidance and corrections.
// Each algorithm file registers itself with one DIFFUSE_REGISTER_* line, so adding an algorithm
// touches one file. Aliases map the names users know from A1111/ComfyUI ("dpmpp_2m", "euler_a")
// onto a key plus preset options.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <diffuse/config.h>

namespace diffuse {

namespace detail {
/// Defined in the generated builtin_modules.cpp of libdiffuse: calls the anchor of every built-in
/// module source, so that referencing it from Registry::get() keeps every built-in registration
/// in a static link.
void link_builtin_modules();
}  // namespace detail

template <class Base>
class Registry {
 public:
  using Factory = std::function<std::unique_ptr<Base>(const Config&)>;

  struct Entry {
    std::string key;
    std::string summary;
    Factory factory;
  };
  struct Alias {
    std::string key;  // the registered key it maps to
    Config preset;    // options it sets; user options override them
    std::string summary;
  };

  /// The one registry of this kind (function-local static: no initialisation-order problem).
  static Registry& get() {
    detail::link_builtin_modules();
    static Registry instance;
    return instance;
  }

  bool add(std::string key, std::string summary, Factory f) {
    std::lock_guard<std::mutex> lock(mu_);
    entries_[key] = Entry{key, std::move(summary), std::move(f)};
    return true;
  }

  bool add_alias(std::string alias, std::string key, Config preset, std::string summary) {
    std::lock_guard<std::mutex> lock(mu_);
    aliases_[std::move(alias)] = Alias{std::move(key), std::move(preset), std::move(summary)};
    return true;
  }

  /// Resolves `name` (a key or an alias) and builds it. Unknown names list every valid one.
  std::unique_ptr<Base> make(const std::string& name, const Config& options = {}) const {
    auto [key, config] = resolve(name, options);
    Factory f;
    {
      std::lock_guard<std::mutex> lock(mu_);
      f = entries_.at(key).factory;
    }
    return f(config);
  }

  /// "name" or "name:key=value,key=value".
  std::unique_ptr<Base> make_from_spec(const std::string& spec) const {
    const auto colon = spec.find(':');
    if (colon == std::string::npos) return make(detail::trim(spec));
    return make(detail::trim(spec.substr(0, colon)), parse_config(spec.substr(colon + 1)));
  }

  /// The registered key and the merged options an alias or key stands for.
  std::pair<std::string, Config> resolve(const std::string& name, const Config& options) const {
    std::lock_guard<std::mutex> lock(mu_);
    if (entries_.count(name)) return {name, options};
    auto a = aliases_.find(name);
    if (a != aliases_.end() && entries_.count(a->second.key)) {
      Config merged = a->second.preset;
      for (const auto& kv : options) merged[kv.first] = kv.second;
      return {a->second.key, merged};
    }
    throw ConfigError(detail::cat("unknown ", kind_name(), " '", name,
                                  "'; valid names: ", detail::join(names_locked())));
  }

  bool contains(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mu_);
    return entries_.count(name) || aliases_.count(name);
  }

  std::vector<std::string> keys() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (const auto& kv : entries_) out.push_back(kv.first);
    return out;
  }

  /// Keys and aliases, sorted.
  std::vector<std::string> names() const {
    std::lock_guard<std::mutex> lock(mu_);
    return names_locked();
  }

  std::string summary(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mu_);
    if (entries_.count(name)) return entries_.at(name).summary;
    if (aliases_.count(name)) return aliases_.at(name).summary;
    return "";
  }

  static const char* kind_name() { return Base::kKindName; }

 private:
  Registry() = default;

  std::vector<std::string> names_locked() const {
    std::vector<std::string> out;
    for (const auto& kv : entries_) out.push_back(kv.first);
    for (const auto& kv : aliases_) out.push_back(kv.first);
    std::sort(out.begin(), out.end());
    return out;
  }

  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
  std::map<std::string, Alias> aliases_;
};

}  // namespace diffuse

#define DIFFUSE_DETAIL_CONCAT2(a, b) a##b
#define DIFFUSE_DETAIL_CONCAT(a, b) DIFFUSE_DETAIL_CONCAT2(a, b)

// A built-in module source compiled on its own (-DDIFFUSE_UNITY_BUILD=OFF: libdiffuse's build gives
// each one that registers something -DDIFFUSE_MODULE_ANCHOR=<name>) defines its anchor here; in a
// unity build the generated batch that #includes it defines the anchor instead. The generated
// builtin_modules.cpp calls every anchor (cmake/DiffuseGenerateUmbrella.cmake). Code outside the
// library registers the same way and needs no anchor: its object files are linked because the
// application names them.
#ifdef DIFFUSE_MODULE_ANCHOR
namespace diffuse::detail {
void DIFFUSE_MODULE_ANCHOR();
void DIFFUSE_MODULE_ANCHOR() {}
}  // namespace diffuse::detail
#endif

/// Registers Type (which has `static std::unique_ptr<Base> from_config(const Config&)`) under key.
#define DIFFUSE_REGISTER(Base, Type, key, summary)                                        \
  inline const bool DIFFUSE_DETAIL_CONCAT(diffuse_registered_, Type) =                    \
      ::diffuse::Registry<Base>::get().add(key, summary, [](const ::diffuse::Config& c) { \
        return std::unique_ptr<Base>(Type::from_config(c));                               \
      })

/// Registers an alias name for an existing key with preset options.
#define DIFFUSE_REGISTER_ALIAS(Base, tag, alias, key, preset, summary) \
  inline const bool DIFFUSE_DETAIL_CONCAT(diffuse_alias_, tag) =       \
      ::diffuse::Registry<Base>::get().add_alias(alias, key, preset, summary)
