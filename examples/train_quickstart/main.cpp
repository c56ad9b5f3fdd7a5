// SPDX-License-Identifier: Apache-2.0
// Train a tiny class-conditional DiT on Fashion-MNIST with input perturbation, then measure it:
// the README's training example, built and run (for a few steps) by the tests.
#include <diffuse/training.h>

#include <cstdlib>
#include <iostream>

int main(int argc, char** argv) {
  const int64_t steps = argc > 1 ? std::atoll(argv[1]) : 20000;  // about 20 minutes on 2 cores
  const std::string out = argc > 2 ? argv[2] : "quickstart_run";
  const int64_t num_samples = argc > 3 ? std::atoll(argv[3]) : 500;

  diffuse::Dataset data = diffuse::load_fashion_mnist("train");  // [60000, 1, 28, 28] in [-1, 1]
  diffuse::DiT model(
      diffuse::dit_preset("tiny", 28, 1).patch_size(4).num_classes(data.num_classes));
  std::shared_ptr<const diffuse::Objective> objective = diffuse::objective_from_spec("ddpm_ip");
  std::shared_ptr<const diffuse::NoiseSchedule> schedule = diffuse::make_schedule("discrete");

  diffuse::TrainerOptions options;
  options.steps(steps).batch_size(64).lr(3e-4).warmup_steps(200).grad_clip(1.0).output_dir(out);
  diffuse::Trainer<diffuse::DiT> trainer(model, objective, schedule, data, options,
                                         diffuse::console_reporter(/*bar=*/false));
  trainer.resume_latest();  // continues bit-exactly if `out` holds a checkpoint
  trainer.train();          // checkpoints, loss.csv / loss.png and sample grids in `out`

  // Frechet distance, precision and recall of EMA samples against the test split.
  diffuse::EvalResult r = diffuse::evaluate_fashion_mnist(trainer.sample(num_samples, /*seed=*/1));
  std::cout << "step " << trainer.step() << ": FD " << r.fd << ", precision " << r.precision
            << ", recall " << r.recall << "\n";
}
