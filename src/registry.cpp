// SPDX-License-Identifier: Apache-2.0
// The compiled library: one translation unit that includes every built-in module, so their
// registrations live in libdiffuse and are linked whenever a registry is used.
#include <diffuse/all.h>

namespace diffuse::detail {
void link_builtin_modules() {}
}  // namespace diffuse::detail
