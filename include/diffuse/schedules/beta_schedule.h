// SPDX-License-Identifier: Apache-2.0
// The named beta schedules of discrete diffusion models (DDPM's linear, Stable Diffusion's
// scaled_linear, iDDPM's cosine "squaredcos_cap_v2"; diffusers' names). The betas themselves are
// computed in schedules/detail/betas.cpp.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace diffuse {

enum class BetaSchedule { linear, scaled_linear, squaredcos_cap_v2 };

/// Names of BetaSchedule ("linear", "scaled_linear", "squaredcos_cap_v2"), for
/// ConfigReader::get_enum and to_config().
const std::vector<std::pair<std::string, BetaSchedule>>& beta_schedule_names();

/// The BetaSchedule called `name`; anything else is a ConfigError naming it and the valid names.
BetaSchedule parse_beta_schedule(const std::string& name);

std::string to_string(BetaSchedule schedule);

}  // namespace diffuse
