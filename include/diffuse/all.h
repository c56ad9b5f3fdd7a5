// SPDX-License-Identifier: Apache-2.0
// Everything: the core, every schedule, spacing, sampler, guidance and correction.
#pragma once

#include <diffuse/diffuse.h>
#include <diffuse/all_schedules.h>
#include <diffuse/all_samplers.h>
#include <diffuse/gaussian_mixture.h>
#include <diffuse/metrics.h>
#include <diffuse/exposure_bias.h>
