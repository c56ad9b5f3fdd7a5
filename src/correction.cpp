// SPDX-License-Identifier: Apache-2.0
#include <diffuse/correction.h>

#include <utility>

namespace diffuse {

namespace detail {

CorrectionRun::CorrectionRun(const std::vector<std::shared_ptr<Correction>>& list,
                             const char* who) {
  try {
    for (const auto& c : list) {
      check(c != nullptr, who, ": a correction in SampleOptions.corrections is null");
      if (std::unique_ptr<Correction> copy = c->clone()) {
        copies_.push_back(std::move(copy));
        run_.push_back(copies_.back().get());
      } else {
        bool mine = false;
        for (Correction* m : marked_) mine = mine || m == c.get();
        if (!mine) {
          check(!c->busy_.busy.exchange(true), who, ": correction '", c->name(),
                "' is in use by another run; a correction without clone() serves one run at a time "
                "(override Correction::clone() to share one object between threads)");
          marked_.push_back(c.get());
        }
        run_.push_back(c.get());
      }
    }
    for (Correction* c : run_) c->reset();
  } catch (...) {
    release();
    throw;
  }
}

void CorrectionRun::release() {
  for (Correction* c : marked_) c->busy_.busy = false;
  marked_.clear();
}

}  // namespace detail

std::unique_ptr<Correction> make_correction(const std::string& name, const Config& options) {
  return Registry<Correction>::get().make(name, options);
}

std::unique_ptr<Correction> correction_from_spec(const std::string& spec) {
  return Registry<Correction>::get().make_from_spec(spec);
}

}  // namespace diffuse
