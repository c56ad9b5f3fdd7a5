// SPDX-License-Identifier: Apache-2.0
// Everything in the core library: every schedule, spacing, sampler, guidance, correction and
// training objective. The training engine (DiT, trainer, data, evaluation) is <diffuse/training.h>.
#pragma once

#include <diffuse/all_objectives.h>
#include <diffuse/all_samplers.h>
#include <diffuse/all_schedules.h>
#include <diffuse/cpu_allocator.h>
#include <diffuse/diffuse.h>
#include <diffuse/exposure_bias.h>
#include <diffuse/gaussian_mixture.h>
#include <diffuse/metrics.h>
