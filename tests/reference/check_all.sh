#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs every generator of tests/reference and compares its table with the test that holds it
# (compare.py: count, exact matches, largest deviations). Needs the sources of README.md's table:
#   DIFFUSERS_SRC, KDIFFUSION_SRC, AYS_COMFYUI, AYS_A1111, A1111_EXTRA, COMFYUI_SAMPLING, DIT_SRC,
#   PYTORCH_FID_SRC, SIT_SRC, TORCHDIFFEQ_SRC
# Usage, from the repository root: bash tests/reference/check_all.sh [python (default /usr/bin/python3)]
set -euo pipefail
py="${1:-/usr/bin/python3}"
ref=tests/reference
out="$(mktemp -d "${TMPDIR:-/tmp}/diffuse_goldens.XXXXXX")"
trap 'rm -rf "$out"' EXIT
cmp() {  # name, generator args, test file, [--from X --to Y]
  local name="$1" args="$2" file="$3"
  shift 3
  echo "== $name ($file)"
  # shellcheck disable=SC2086
  "$py" "$ref"/$args > "$out/$name.txt"
  "$py" "$ref/compare.py" "$out/$name.txt" "$file" "$@"
}
s=tests/samplers
cmp ddim "ddim_ddpm.py ddim" $s/ddim_test.cpp --from "const GoldenValues kDdimEta0" --to "3440.13427734375"
cmp ddpm "ddim_ddpm.py ddpm" $s/ddpm_test.cpp --from "const GoldenValues kDdpmSmall" --to "0.47269588708877563"
cmp dpm_multistep "dpm_solver.py multistep" $s/dpm_solver_pp_test.cpp --from "const DpmGolden kGolden" --to "};"
cmp dpm_sde "dpm_solver.py sde" $s/dpm_solver_pp_sde_test.cpp --from "const DpmGolden kGolden" --to "};"
cmp dpm_single "dpm_solver.py single" $s/dpm_solver_pp_singlestep_test.cpp --from "const DpmGolden kGolden" --to "};"
cmp dpm_orders "dpm_solver.py orders" $s/dpm_solver_pp_singlestep_test.cpp \
  --from '{1, false, "min", 1, {1}}' --to '{3, true, "zero", 12'
cmp golden_euler "k_schedulers.py euler" $s/golden_euler.inc
cmp golden_euler_ancestral "k_schedulers.py euler_a" $s/golden_euler_ancestral.inc
cmp golden_heun "k_schedulers.py heun" $s/golden_heun.inc
for k in euler euler_ancestral heun lms dpm_2 dpm_2_ancestral dpmpp_2s_ancestral dpmpp_sde dpmpp_3m_sde; do
  cmp "kdiffusion_$k" "kdiffusion.py $k" "$s/kdiffusion_$k.inc"
done
cmp a1111_spacings "kdiffusion.py a1111_spacings" tests/schedules/a1111_spacings.inc
cmp a1111_restart "kdiffusion.py restart" $s/a1111_restart.inc
cmp flow_match "flow_match.py" $s/flow_match_test.cpp --from "const std::vector<ConfigGolden> kFlowGolden" --to "};"
cmp dpm_options "dpm_options.py" $s/from_diffusers_test.cpp --from "const std::vector<testing::ConfigGolden> kDpmOptionGolden" --to "};"
cmp unipc "new_solvers.py unipc" $s/unipc_test.cpp --from "const std::vector<testing::ConfigGolden> kUniPCGolden" --to "};"
cmp unipc_suite "new_solvers.py unipc --suite" $s/unipc_test.cpp --from "const testing::SuiteGolden kUniPCSuite" --to "};"
cmp deis "new_solvers.py deis" $s/deis_test.cpp --from "const std::vector<testing::ConfigGolden> kDeisGolden" --to "};"
cmp deis_suite "new_solvers.py deis --suite" $s/deis_test.cpp --from "const testing::SuiteGolden kDeisSuite" --to "};"
cmp k_from_diffusers "new_solvers.py k" $s/k_from_diffusers_test.cpp --from "const std::vector<testing::ConfigGolden> kKGolden" --to "};"
cmp pndm "new_solvers.py pndm" $s/plms_test.cpp --from "const std::vector<testing::ConfigGolden> kPndmGolden" --to "};"
cmp pndm_suite "new_solvers.py pndm --suite" $s/plms_test.cpp --from "const testing::SuiteGolden kPndmSuite" --to "};"
cmp edm "new_solvers.py edm" $s/edm_test.cpp --from "const std::vector<testing::ConfigGolden> kEdmGolden" --to "};"
cmp edm_suite "new_solvers.py edm --suite" $s/edm_test.cpp --from "const EdmSuite kEdmSuite" --to "};"
cmp lcm "new_solvers.py lcm" $s/lcm_test.cpp --from "const std::vector<testing::ConfigGolden> kLcmGolden" --to "};"
cmp lcm_suite "new_solvers.py lcm --suite" $s/lcm_test.cpp --from "const DistilledSuite kLcmSuite" --to "};"
cmp dpm_noise "new_solvers.py dpm_noise" $s/dpm_solver_test.cpp --from "const std::vector<testing::ConfigGolden> kDpmNoiseGolden" --to "};"
cmp dpm_noise_suite "new_solvers.py dpm_noise --suite" $s/dpm_solver_test.cpp --from "const testing::SuiteGolden g{" --to "223.586029};"
cmp comfyui_rf "comfyui_rf.py" $s/flow_match_test.cpp --from "const std::vector<ComfyRfGolden> kComfyRf" --to "};"
cmp spacing_tables "spacing.py tables" tests/schedules/spacing_test.cpp --from '{"linear", kLinear' \
  --to '4.213262465088073e-09}'
cmp spacing_lists "spacing.py spacings" tests/schedules/spacing_test.cpp --from '{1000, "linspace", {}' \
  --to '{1100, "trailing"'
cmp sit_samplers "sit_samplers.py" $s/sit_samplers.inc
echo "== latent_models.py: regenerated fixtures byte-identical to tests/training/fixtures/latent"
latent_tmp=$(mktemp -d)
"$py" "$ref"/latent_models.py --out "$latent_tmp" > /dev/null
diff -r --exclude README.md "$latent_tmp" tests/training/fixtures/latent && echo "latent fixtures: identical"
rm -rf "$latent_tmp"
echo "== printed only (compare by eye with the comments that quote them)"
for args in "spacing.py points" "dpm_solver.py suite" "ddim_ddpm.py ddpm_noise" "k_schedulers.py noise_suite" "ddpm_gaussian.py" \
  "align_your_steps.py" "objectives.py" "frechet_distance.py" "torch_noise.py" "dit_params.py"; do
  echo "-- $args"
  # shellcheck disable=SC2086
  "$py" "$ref"/$args
done
