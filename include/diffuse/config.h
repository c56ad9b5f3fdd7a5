// SPDX-License-Identifier: Apache-2.0
// Key=value configuration strings, the C++ counterpart of diffusers' register_to_config/from_config.
// "eta=0.5,order=2" parses into a Config; ConfigReader hands out typed values and rejects keys
// nobody asked for, naming the valid ones.
#pragma once

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace diffuse {

using Config = std::map<std::string, std::string>;

/// Base of every error diffuse throws on purpose. Catch a kind below to tell them apart:
///   ConfigError     bad configuration or argument (unknown name or key, value out of range,
///                   wrong shape or dtype): the caller can fix the input and retry;
///   IOError         a file or stream could not be read or written, or its contents are not what
///                   they claim (truncated, corrupt, wrong format);
///   NumericalError  the computation itself went wrong (NaN or Inf in a sample, a loss or a schedule).
/// Derives from std::invalid_argument (as it always has) so callers can catch either.
class Error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// Bad configuration or argument. check() throws this.
class ConfigError : public Error {
 public:
  using Error::Error;
};

/// A file or stream could not be read or written, or its contents are malformed.
class IOError : public Error {
 public:
  using Error::Error;
};

/// NaN / Inf or another numerical failure of the computation.
class NumericalError : public Error {
 public:
  using Error::Error;
};

namespace detail {

inline std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\n\r");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\n\r");
  return s.substr(b, e - b + 1);
}

inline std::string join(const std::vector<std::string>& items, const std::string& sep = ", ") {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  os.precision(17);
  (os << ... << args);
  return os.str();
}

}  // namespace detail

/// Formats a double with enough digits to round-trip (used by to_config()).
/// The shortest of 15, 16 or 17 significant digits that reads back as exactly `v` ("0.1", not
/// "0.10000000000000001"), so configurations round-trip bit for bit and stay readable.
inline std::string format_double(double v) {
  std::string out;
  for (int digits = 15; digits <= 17; ++digits) {
    std::ostringstream os;
    os.precision(digits);
    os << v;
    out = os.str();
    if (std::strtod(out.c_str(), nullptr) == v) break;
  }
  return out;
}

/// The name of an enum value in a names table of ConfigReader::get_enum (for to_config()).
template <class E>
std::string enum_name(E value, const std::vector<std::pair<std::string, E>>& names) {
  for (const auto& [name, v] : names)
    if (v == value) return name;
  return "?";
}

/// Throws diffuse::ConfigError built from the arguments unless cond holds.
template <class... Args>
inline void check(bool cond, const Args&... args) {
  if (!cond) throw ConfigError(detail::cat(args...));
}

/// Throws diffuse::IOError built from the arguments unless cond holds.
template <class... Args>
inline void check_io(bool cond, const Args&... args) {
  if (!cond) throw IOError(detail::cat(args...));
}

/// Throws diffuse::NumericalError built from the arguments unless cond holds.
template <class... Args>
inline void check_numerics(bool cond, const Args&... args) {
  if (!cond) throw NumericalError(detail::cat(args...));
}

/// Parses "key=value,key=value" (spaces around tokens ignored). A value may itself contain ':'
/// but not ','; lists inside a value use ';' or ' ' (e.g. "timesteps=999;500;0").
inline Config parse_config(const std::string& text) {
  Config out;
  std::string item;
  std::istringstream is(text);
  while (std::getline(is, item, ',')) {
    item = detail::trim(item);
    if (item.empty()) continue;
    const auto eq = item.find('=');
    check(eq != std::string::npos && eq > 0, "config item '", item, "' is not of the form key=value");
    const std::string key = detail::trim(item.substr(0, eq));
    check(out.count(key) == 0, "config key '", key, "' given twice");
    out[key] = detail::trim(item.substr(eq + 1));
  }
  return out;
}

inline std::string format_config(const Config& c) {
  std::string out;
  for (const auto& [k, v] : c) out += (out.empty() ? "" : ",") + k + "=" + v;
  return out;
}

/// Typed, checked access to a Config on behalf of one named component. Every get_* marks the key
/// as known; finish() throws if the config holds a key that no get_* asked for.
class ConfigReader {
 public:
  ConfigReader(const Config& c, std::string owner) : c_(c), owner_(std::move(owner)) {}

  bool has(const std::string& key) {
    known_.insert(key);
    return c_.count(key) != 0;
  }

  std::string get_string(const std::string& key, const std::string& dflt) {
    return has(key) ? c_.at(key) : dflt;
  }

  std::string get_choice(const std::string& key, const std::string& dflt,
                         const std::vector<std::string>& choices) {
    const std::string v = get_string(key, dflt);
    for (const auto& ch : choices)
      if (ch == v) return v;
    throw ConfigError(detail::cat(owner_, ": ", key, "='", v, "' is not one of: ", detail::join(choices)));
  }

  /// An option whose value is one of a fixed set of names, parsed once into an enum:
  ///   o.mode = r.get_enum("mode", o.mode, {{"grid", Mode::kGrid}, {"train_stride", Mode::kTrainStride}});
  /// A value not in `names` is a ConfigError that lists the valid names.
  template <class E>
  E get_enum(const std::string& key, E dflt, const std::vector<std::pair<std::string, E>>& names) {
    if (!has(key)) return dflt;
    const std::string& v = c_.at(key);
    for (const auto& [name, value] : names)
      if (name == v) return value;
    std::vector<std::string> valid;
    for (const auto& kv : names) valid.push_back(kv.first);
    throw ConfigError(detail::cat(owner_, ": ", key, "='", v, "' is not one of: ", detail::join(valid)));
  }

  double get_double(const std::string& key, double dflt) {
    if (!has(key)) return dflt;
    return to_double(key, c_.at(key));
  }

  int64_t get_int(const std::string& key, int64_t dflt) {
    if (!has(key)) return dflt;
    const std::string& v = c_.at(key);
    errno = 0;
    char* end = nullptr;
    const long long r = std::strtoll(v.c_str(), &end, 10);
    check(!v.empty() && end && *end == '\0' && errno == 0, owner_, ": ", key, "='", v,
          "' is not an integer");
    return static_cast<int64_t>(r);
  }

  bool get_bool(const std::string& key, bool dflt) {
    if (!has(key)) return dflt;
    const std::string& v = c_.at(key);
    if (v == "1" || v == "true" || v == "True" || v == "on" || v == "yes") return true;
    if (v == "0" || v == "false" || v == "False" || v == "off" || v == "no") return false;
    throw Error(detail::cat(owner_, ": ", key, "='", v, "' is not a boolean (true/false)"));
  }

  /// A list of numbers separated by ';' or whitespace.
  std::vector<double> get_doubles(const std::string& key) {
    std::vector<double> out;
    if (!has(key)) return out;
    std::string v = c_.at(key);
    for (auto& ch : v)
      if (ch == ';') ch = ' ';
    std::istringstream is(v);
    std::string tok;
    while (is >> tok) out.push_back(to_double(key, tok));
    return out;
  }

  /// Throws if the config holds keys nobody asked for.
  void finish() const {
    for (const auto& kv : c_) {
      if (known_.count(kv.first) == 0) {
        std::vector<std::string> valid(known_.begin(), known_.end());
        throw Error(detail::cat(owner_, ": unknown option '", kv.first, "'; valid options: ",
                                valid.empty() ? std::string("(none)") : detail::join(valid)));
      }
    }
  }

 private:
  double to_double(const std::string& key, const std::string& v) const {
    errno = 0;
    char* end = nullptr;
    const double r = std::strtod(v.c_str(), &end);
    check(!v.empty() && end && *end == '\0' && errno == 0, owner_, ": ", key, "='", v,
          "' is not a number");
    check(std::isfinite(r), owner_, ": ", key, "='", v, "' is not finite");
    return r;
  }

  const Config& c_;
  std::string owner_;
  std::set<std::string> known_;
};

}  // namespace diffuse
