// SPDX-License-Identifier: Apache-2.0
#include <diffuse/objective.h>

namespace diffuse {

std::unique_ptr<Objective> make_objective(const std::string& name, const Config& options) {
  return Registry<Objective>::get().make(name, options);
}

std::unique_ptr<Objective> objective_from_spec(const std::string& spec) {
  return Registry<Objective>::get().make_from_spec(spec);
}

}  // namespace diffuse
