// SPDX-License-Identifier: Apache-2.0
// Shared test helpers.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <diffuse/all.h>

namespace diffuse::testing {

/// |actual - expected| <= atol + rtol * |expected| elementwise, reporting the worst element.
inline void ExpectTensorNear(const Tensor& actual, const Tensor& expected, double atol, double rtol,
                             const std::string& what = "") {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const Tensor a = actual.to(at::kDouble).cpu(), e = expected.to(at::kDouble).cpu();
  const Tensor excess = (a - e).abs() - (atol + rtol * e.abs());
  const double worst = excess.max().item<double>();
  if (worst > 0) {
    const int64_t i = excess.reshape({-1}).argmax().item<int64_t>();
    ADD_FAILURE() << what << ": element " << i << " is " << a.reshape({-1})[i].item<double>()
                  << ", expected " << e.reshape({-1})[i].item<double>() << " (atol " << atol
                  << ", rtol " << rtol << ")";
  }
}

/// A spy network that records (x, t, cond) of each call and returns f(x, t).
struct RecordingModel {
  struct Call {
    Tensor x, t;
    Conditioning c;
  };
  std::function<Tensor(const Tensor&, const Tensor&)> f;
  std::shared_ptr<std::vector<Call>> calls = std::make_shared<std::vector<Call>>();

  Network network() const {
    auto fn = f;
    auto log = calls;
    return [fn, log](const Tensor& x, const Tensor& t, const Conditioning& c) {
      log->push_back({x.clone(), t.clone(), c});
      return fn(x, t);
    };
  }
};

/// The path of tests/training/fixtures/<name> (from $DIFFUSE_SOURCE_DIR, else next to this file).
inline std::string fixture_path(const std::string& name) {
  const char* src = std::getenv("DIFFUSE_SOURCE_DIR");
  const std::filesystem::path dir =
      src ? std::filesystem::path(src) / "tests/training/fixtures"
          : std::filesystem::path(__FILE__).parent_path() / "training/fixtures";
  return (dir / name).string();
}

/// The whole content of a file ("" if it cannot be read).
inline std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// Every number in a text file (whitespace-separated; lines starting with '#' skipped): reference
/// values written by the fixture scripts.
inline std::vector<double> read_numbers(const std::string& path) {
  std::ifstream in(path);
  std::vector<double> v;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream s(line);
    double x;
    while (s >> x) v.push_back(x);
  }
  return v;
}

/// The message of the diffuse::Error that f() throws, or "" if it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace diffuse::testing

/// Expects `stmt` to throw a one-line diffuse::Error whose message contains `text`.
#define EXPECT_ERROR_NAMING(stmt, text)                                                     \
  do {                                                                                      \
    const std::string msg_ = ::diffuse::testing::error_of([&] { stmt; });                   \
    EXPECT_NE(msg_.find(text), std::string::npos)                                           \
        << "expected an Error naming '" << (text) << "', got '" << msg_ << "' from " #stmt; \
    EXPECT_EQ(msg_.find('\n'), std::string::npos) << "one line expected: " << msg_;         \
  } while (0)
