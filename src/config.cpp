// SPDX-License-Identifier: Apache-2.0
#include <diffuse/config.h>

#include <cerrno>
#include <cstdlib>

namespace diffuse {

namespace detail {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\n\r");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\n\r");
  return s.substr(b, e - b + 1);
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

std::string one_of(const std::vector<std::string>& names) {
  if (names.size() <= 1) return names.empty() ? std::string("(none)") : names[0];
  std::vector<std::string> head(names.begin(), names.end() - 1);
  return join(head) + " or " + names.back();
}

}  // namespace detail

std::string format_double(double v) {
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

Config parse_config(const std::string& text) {
  Config out;
  std::string item;
  std::istringstream is(text);
  while (std::getline(is, item, ',')) {
    item = detail::trim(item);
    if (item.empty()) continue;
    const auto eq = item.find('=');
    check(eq != std::string::npos && eq > 0, "config item '", item,
          "' is not of the form key=value");
    const std::string key = detail::trim(item.substr(0, eq));
    check(out.count(key) == 0, "config key '", key, "' given twice");
    out[key] = detail::trim(item.substr(eq + 1));
  }
  return out;
}

std::string format_config(const Config& c) {
  std::string out;
  for (const auto& [k, v] : c) out += (out.empty() ? "" : ",") + k + "=" + v;
  return out;
}

bool ConfigReader::has(const std::string& key) {
  known_.insert(key);
  return c_.count(key) != 0;
}

std::string ConfigReader::get_string(const std::string& key, const std::string& dflt) {
  return has(key) ? c_.at(key) : dflt;
}

std::string ConfigReader::get_choice(const std::string& key, const std::string& dflt,
                                     const std::vector<std::string>& choices) {
  const std::string v = get_string(key, dflt);
  for (const auto& ch : choices)
    if (ch == v) return v;
  throw_not_one_of(key, v, choices);
}

void ConfigReader::throw_not_one_of(const std::string& key, const std::string& v,
                                    const std::vector<std::string>& valid) const {
  throw ConfigError(
      detail::cat(owner_, ": ", key, "='", v, "' is not one of: ", detail::join(valid)));
}

double ConfigReader::get_double(const std::string& key, double dflt) {
  if (!has(key)) return dflt;
  return to_double(key, c_.at(key));
}

int64_t ConfigReader::get_int(const std::string& key, int64_t dflt) {
  if (!has(key)) return dflt;
  const std::string& v = c_.at(key);
  errno = 0;
  char* end = nullptr;
  const long long r = std::strtoll(v.c_str(), &end, 10);
  check(!v.empty() && end && *end == '\0' && errno == 0, owner_, ": ", key, "='", v,
        "' is not an integer");
  return static_cast<int64_t>(r);
}

bool ConfigReader::get_bool(const std::string& key, bool dflt) {
  if (!has(key)) return dflt;
  const std::string& v = c_.at(key);
  if (v == "1" || v == "true" || v == "True" || v == "on" || v == "yes") return true;
  if (v == "0" || v == "false" || v == "False" || v == "off" || v == "no") return false;
  throw ConfigError(detail::cat(owner_, ": ", key, "='", v, "' is not a boolean (true/false)"));
}

std::vector<double> ConfigReader::get_doubles(const std::string& key) {
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

void ConfigReader::finish() const {
  for (const auto& kv : c_) {
    if (known_.count(kv.first) == 0) {
      std::vector<std::string> valid(known_.begin(), known_.end());
      throw ConfigError(detail::cat(owner_, ": unknown option '", kv.first, "'; valid options: ",
                                    valid.empty() ? std::string("(none)") : detail::join(valid)));
    }
  }
}

double ConfigReader::to_double(const std::string& key, const std::string& v) const {
  errno = 0;
  char* end = nullptr;
  const double r = std::strtod(v.c_str(), &end);
  check(!v.empty() && end && *end == '\0' && errno == 0, owner_, ": ", key, "='", v,
        "' is not a number");
  check(std::isfinite(r), owner_, ": ", key, "='", v, "' is not finite");
  return r;
}

}  // namespace diffuse
