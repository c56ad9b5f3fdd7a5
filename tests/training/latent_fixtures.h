// SPDX-License-Identifier: Apache-2.0
// Helpers of the latent-model tests: the fixtures of tests/reference/latent_models.py
// (tests/training/fixtures/latent/), the parity measure and the key/shape lists.
#pragma once

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "../test_util.h"

namespace diffuse::test {

inline std::string latent_fixture(const std::string& name) {
  return ::diffuse::testing::fixture_path("latent/" + name);
}

/// max |a - b| / max |b|: the parity measure of issue 17 (1e-5 in float32).
inline double relative_error(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() /
         std::max(b.abs().max().item<double>(), 1e-30);
}

/// A key list ("name d0 d1 ..." per line, '#' comments) as name -> shape.
inline std::map<std::string, std::vector<int64_t>> read_key_list(const std::string& file) {
  std::ifstream in(latent_fixture(file));
  EXPECT_TRUE(in.good()) << file;
  std::map<std::string, std::vector<int64_t>> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string name;
    ls >> name;
    std::vector<int64_t> shape;
    int64_t d = 0;
    while (ls >> d) shape.push_back(d);
    out[name] = shape;
  }
  return out;
}

}  // namespace diffuse::test
