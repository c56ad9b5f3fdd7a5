// SPDX-License-Identifier: Apache-2.0
// Declared in <diffuse/training/fault_injection.h>.
#include <diffuse/training/fault_injection.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>

#include <signal.h>

#include <diffuse/config.h>

namespace diffuse {

namespace detail {

FaultSpec& fault_spec() {
  static FaultSpec spec;
  return spec;
}

std::atomic<bool>& fault_enabled() {
  static std::atomic<bool> enabled{false};
  return enabled;
}

void parse_fault_spec(const std::string& text, FaultSpec& out) {
  out.point.clear();
  out.n = 1;
  out.substring.clear();
  out.hits = 0;
  if (text.empty()) return;
  const auto c1 = text.find(':');
  out.point = text.substr(0, c1);
  check(!out.point.empty(), "fault injection spec '", text, "': the point name is empty");
  if (c1 == std::string::npos) return;
  const auto c2 = text.find(':', c1 + 1);
  const std::string n =
      text.substr(c1 + 1, c2 == std::string::npos ? std::string::npos : c2 - c1 - 1);
  check(!n.empty() && n.find_first_not_of("0123456789") == std::string::npos && n.size() < 18,
        "fault injection spec '", text, "': the count must be a positive integer, got '", n, "'");
  out.n = std::stoll(n);
  check(out.n >= 1, "fault injection spec '", text, "': the count must be >= 1, got ", out.n);
  if (c2 != std::string::npos) out.substring = text.substr(c2 + 1);
}

std::once_flag& fault_env_once() {
  static std::once_flag once;
  return once;
}

}  // namespace detail

void set_fault_injection(const std::string& spec) {
  std::call_once(detail::fault_env_once(), [] {});  // the environment no longer applies
  detail::parse_fault_spec(spec, detail::fault_spec());
  detail::fault_enabled() = !detail::fault_spec().point.empty();
}

bool fault_injection_armed() {
  std::call_once(detail::fault_env_once(), [] {
    const char* env = std::getenv("DIFFUSE_FAULT_INJECT");
    if (env == nullptr || *env == '\0') return;
    detail::parse_fault_spec(env, detail::fault_spec());
    detail::fault_enabled() = !detail::fault_spec().point.empty();
  });
  return detail::fault_enabled().load(std::memory_order_relaxed);
}

void fault_point(const char* point, const std::string& subject) {
  if (!fault_injection_armed()) return;
  detail::FaultSpec& s = detail::fault_spec();
  if (s.point != point) return;
  if (!s.substring.empty() && subject.find(s.substring) == std::string::npos) return;
  if (++s.hits == s.n) ::raise(SIGKILL);
}

}  // namespace diffuse
