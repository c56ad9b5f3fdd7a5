// SPDX-License-Identifier: Apache-2.0
// The training engine: DiT, the trainer, datasets, image output and evaluation, plus everything in
// <diffuse/all.h>. These headers include <torch/nn> and <torch/optim>; link diffuse::training.
#pragma once

#include <diffuse/all.h>
#include <diffuse/all_training.h>
