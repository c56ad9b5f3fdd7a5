// SPDX-License-Identifier: Apache-2.0
// Key=value configuration strings, the C++ counterpart of diffusers'
// register_to_config/from_config. "eta=0.5,order=2" parses into a Config; ConfigReader hands out
// typed values and rejects keys nobody asked for, naming the valid ones.
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
///   NumericalError  the computation itself went wrong (NaN or Inf in a sample, a loss or a
///   schedule).
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

/// s without leading and trailing spaces, tabs and line breaks.
std::string trim(const std::string& s);

/// The items joined with `sep` in between.
std::string join(const std::vector<std::string>& items, const std::string& sep = ", ");

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
std::string format_double(double v);

/// A names table: each value of an enum with its config name, as ConfigReader::get_enum,
/// parse_enum, enum_name and check_enum take it.
template <class E>
using EnumNames = std::vector<std::pair<std::string, E>>;

namespace detail {

/// "a", "a or b", "a, b or c".
std::string one_of(const std::vector<std::string>& names);

template <class E>
std::vector<std::string> names_of(const EnumNames<E>& names) {
  std::vector<std::string> out;
  for (const auto& kv : names) out.push_back(kv.first);
  return out;
}

}  // namespace detail

/// The name of an enum value in a names table of ConfigReader::get_enum (for to_config()); "?"
/// for a value the table does not hold.
template <class E>
std::string enum_name(E value, const EnumNames<E>& names) {
  for (const auto& [name, v] : names)
    if (v == value) return name;
  return "?";
}

/// The value called `name` in `names`. Any other name is a ConfigError
/// "<what> must be a, b or c, got '<name>'". The parse_*() functions of the enums use it:
///   Autocast parse_autocast(const std::string& n) {
///     return parse_enum(n, autocast_names(), "TrainerOptions.autocast"); }
template <class E>
E parse_enum(const std::string& name, const EnumNames<E>& names, const std::string& what) {
  for (const auto& [n, v] : names)
    if (n == name) return v;
  throw ConfigError(detail::cat(what, " must be ", detail::one_of(detail::names_of(names)),
                                ", got '", name, "'"));
}

/// For validate(): a ConfigError "<what> must be a, b or c, got enum value N" unless `value` is
/// in `names` (an enum class holds any value of its underlying type, e.g. after a static_cast).
template <class E>
void check_enum(E value, const EnumNames<E>& names, const std::string& what) {
  for (const auto& kv : names)
    if (kv.second == value) return;
  throw ConfigError(detail::cat(what, " must be ", detail::one_of(detail::names_of(names)),
                                ", got enum value ", static_cast<long long>(value)));
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
Config parse_config(const std::string& text);

/// "key=value,key=value" in key order (the inverse of parse_config).
std::string format_config(const Config& c);

/// Typed, checked access to a Config on behalf of one named component. Every get_* marks the key
/// as known; finish() throws if the config holds a key that no get_* asked for.
class ConfigReader {
 public:
  /// Holds a reference to `c`, which must outlive the reader.
  ConfigReader(const Config& c, std::string owner) : c_(c), owner_(std::move(owner)) {}
  /// A temporary Config would dangle.
  ConfigReader(Config&& c, std::string owner) = delete;

  /// Whether the key is set (and marks it as known).
  bool has(const std::string& key);

  /// The value, or dflt when the key is not set.
  std::string get_string(const std::string& key, const std::string& dflt);

  /// The value, which must be one of `choices` (ConfigError listing them otherwise).
  std::string get_choice(const std::string& key, const std::string& dflt,
                         const std::vector<std::string>& choices);

  /// An option whose value is one of a fixed set of names, parsed once into an enum:
  ///   o.mode = r.get_enum("mode", o.mode, {{"grid", Mode::kGrid}, {"train_stride",
  ///   Mode::kTrainStride}});
  /// A value not in `names` is a ConfigError that lists the valid names.
  template <class E>
  E get_enum(const std::string& key, E dflt, const EnumNames<E>& names) {
    if (!has(key)) return dflt;
    const std::string& v = c_.at(key);
    for (const auto& [name, value] : names)
      if (name == v) return value;
    throw_not_one_of(key, v, detail::names_of(names));
  }

  /// A finite number.
  double get_double(const std::string& key, double dflt);

  /// A base-10 integer.
  int64_t get_int(const std::string& key, int64_t dflt);

  /// 1/true/True/on/yes or 0/false/False/off/no.
  bool get_bool(const std::string& key, bool dflt);

  /// A list of numbers separated by ';' or whitespace.
  std::vector<double> get_doubles(const std::string& key);

  /// Throws if the config holds keys nobody asked for.
  void finish() const;

 private:
  double to_double(const std::string& key, const std::string& v) const;
  [[noreturn]] void throw_not_one_of(const std::string& key, const std::string& v,
                                     const std::vector<std::string>& valid) const;

  const Config& c_;
  std::string owner_;
  std::set<std::string> known_;
};

}  // namespace diffuse
