// SPDX-License-Identifier: Apache-2.0
// The training umbrella compiles on its own, and the objective registry reports bad names.
#include <diffuse/training.h>

#include <gtest/gtest.h>

namespace diffuse {
namespace {

TEST(ObjectiveRegistry, UnknownNameIsAnErrorThatNamesIt) {
  try {
    make_objective("no_such_objective");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_objective"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace diffuse
