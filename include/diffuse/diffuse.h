// SPDX-License-Identifier: Apache-2.0
// The core interfaces (no algorithms). Include <diffuse/all.h> for every built-in module.
#pragma once

#include <diffuse/config.h>
#include <diffuse/correction.h>
#include <diffuse/denoiser.h>
#include <diffuse/guidance.h>
#include <diffuse/noise.h>
#include <diffuse/objective.h>
#include <diffuse/registry.h>
#include <diffuse/sample.h>
#include <diffuse/sampler.h>
#include <diffuse/schedule.h>
#include <diffuse/tensor.h>
#include <diffuse/version.h>
