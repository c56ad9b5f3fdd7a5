// SPDX-License-Identifier: Apache-2.0
// Where a spacing's last step lands (the `final` option of the spacings and of the
// schedule_optimisation correction). Implementation: schedules/final_point.cpp.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <diffuse/schedule.h>

namespace diffuse {

/// The grid's final point.
enum class FinalPoint {
  kZero,  ///< "zero" (default): sigma = 0, the clean point
  kMin  ///< "min": the schedule's least noisy point t_min (diffusers' final_sigmas_type="sigma_min"
        ///< / set_alpha_to_one=false)
};

/// Config names of FinalPoint ("zero", "min"), for ConfigReader::get_enum / enum_name.
const std::vector<std::pair<std::string, FinalPoint>>& final_point_names();

/// The point a grid ends on: the clean point (kZero) or s.at(s.t_min()) (kMin).
TimePoint final_point(const NoiseSchedule& s, FinalPoint final_kind);

}  // namespace diffuse
