// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/final_point.h>.
#include <diffuse/schedules/final_point.h>

namespace diffuse {

const std::vector<std::pair<std::string, FinalPoint>>& final_point_names() {
  static const std::vector<std::pair<std::string, FinalPoint>> names{{"zero", FinalPoint::kZero},
                                                                     {"min", FinalPoint::kMin}};
  return names;
}

TimePoint final_point(const NoiseSchedule& s, FinalPoint final_kind) {
  return final_kind == FinalPoint::kMin ? s.at(s.t_min()) : s.clean_point();
}

}  // namespace diffuse
