// SPDX-License-Identifier: Apache-2.0
// The one place the version is set; CMakeLists.txt parses it from here.
#pragma once

#define DIFFUSE_VERSION_MAJOR 0
#define DIFFUSE_VERSION_MINOR 1
#define DIFFUSE_VERSION_PATCH 0
#define DIFFUSE_VERSION_STRING "0.1.0"
