// SPDX-License-Identifier: Apache-2.0
// UniPC (samplers/unipc.h) against diffusers UniPCMultistepScheduler
// (huggingface/diffusers 58eb52c0803ea9af3abec60841c2a093bdf1f951) through from_diffusers, and its
// identities: order 1 without corrector is DDIM, corrector=false is disable_corrector at every
// step, the step onto sigma = 0 lands on alpha x0 where diffusers' bh1 and eps forms return NaN.
#include <cmath>

#include "dpm_fixtures.h"

namespace diffuse {
namespace {

// Printed by `/usr/bin/python3 tests/reference/new_solvers.py --diffusers PATH cases` (the UniPC
// rows; diffusers 58eb52c, torch 1.13.1, numpy 1.24.2, scipy 1.10.1): ConfigGolden rows
// (tests/samplers/dpm_fixtures.h), the nonlinear model from x = 2 * dummy_sample_deter - 1.
const std::vector<testing::ConfigGolden> kUniPCGolden = {
    // UniPCDefault: UniPCMultistepScheduler {}, set_timesteps(10)
    {"UniPCDefault",
     "UniPCMultistepScheduler",
     "",
     10,
     -1,
     {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
     {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792,
      6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549,
      0.72359125943039693, 0.3422596990130316, 0},
     3178.7614636494204,
     {-11.524559489907485, -11.489498512814595, 2.1167334412840941, 5.5858551624352213,
      3.0372665556621037, 5.6534110469531687},
     3178.76099,
     {-11.5245638, -11.4895, 2.11673141, 5.5858531, 3.03726673, 5.65340948}},
    // UniPCBh1Min: UniPCMultistepScheduler {'final_sigmas_type': 'sigma_min', 'solver_type':
    // 'bh1'}, set_timesteps(10)
    {"UniPCBh1Min",
     "UniPCMultistepScheduler",
     "final_sigmas_type=sigma_min,solver_type=bh1",
     10,
     -1,
     {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
     {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792,
      6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549,
      0.72359125943039693, 0.3422596990130316, 0.010000500037502575},
     2716.8088301457728,
     {-9.3236904750646836, -9.2794722950136297, 2.1262431508532886, 5.1519387235702778,
      2.6306288390081556, 5.2243500810583843},
     2716.81006,
     {-9.32369518, -9.27947235, 2.12624407, 5.15193892, 2.63063002, 5.22435236}},
    // UniPCOrder3: UniPCMultistepScheduler {'solver_order': 3}, set_timesteps(12)
    {"UniPCOrder3",
     "UniPCMultistepScheduler",
     "solver_order=3",
     12,
     -1,
     {999, 916, 832, 749, 666, 583, 500, 416, 333, 250, 166, 83},
     {157.40728081040757, 70.450463968351457, 33.521926895647532, 17.24698300991162,
      9.4889202295252151, 5.5600440690522062, 3.4429671125258228, 2.2129225347942048,
      1.4623566969975685, 0.95803371466223142, 0.58364047704056887, 0.28460538324828927, 0},
     3504.9235499014926,
     {-9.469369607413558, -9.4240762860952625, 2.5369563659330367, 5.6256329275170502,
      3.3443964732832185, 5.6656223638441752},
     3504.92285,
     {-9.46936703, -9.42407227, 2.53695726, 5.62563086, 3.34439564, 5.66561985}},
    // UniPCOrder3Bh1Min: UniPCMultistepScheduler {'final_sigmas_type': 'sigma_min', 'solver_order':
    // 3, 'solver_type': 'bh1'}, set_timesteps(12)
    {"UniPCOrder3Bh1Min",
     "UniPCMultistepScheduler",
     "final_sigmas_type=sigma_min,solver_order=3,solver_type=bh1",
     12,
     -1,
     {999, 916, 832, 749, 666, 583, 500, 416, 333, 250, 166, 83},
     {157.40728081040757, 70.450463968351457, 33.521926895647532, 17.24698300991162,
      9.4889202295252151, 5.5600440690522062, 3.4429671125258228, 2.2129225347942048,
      1.4623566969975685, 0.95803371466223142, 0.58364047704056887, 0.28460538324828927,
      0.010000500037502575},
     3418.1139311887491,
     {-7.6389804198614932, -7.617424682556817, 2.4921401101534695, 5.3904571868606297,
      3.3175938037914263, 5.4133179354998777},
     3418.11572,
     {-7.63898563, -7.61742878, 2.49214125, 5.39046144, 3.31759429, 5.41332054}},
    // UniPCOrder1: UniPCMultistepScheduler {'solver_order': 1}, set_timesteps(8)
    {"UniPCOrder1",
     "UniPCMultistepScheduler",
     "solver_order=1",
     8,
     -1,
     {999, 874, 749, 624, 500, 375, 250, 125},
     {157.40728081040757, 48.166835715703215, 17.24698300991162, 7.1861384447243761,
      3.4429671125258228, 1.8012354352525342, 0.95803371466223142, 0.42994242880767186, 0},
     5362.4945171327809,
     {-15.478658176987386, -15.452622746037664, 3.3870251077779918, 10.241191285923552,
      3.5629671785189907, 10.279894630022222},
     5362.49316,
     {-15.4786558, -15.4526186, 3.38702464, 10.241189, 3.56296682, 10.2798929}},
    // UniPCNoiseMin: UniPCMultistepScheduler {'final_sigmas_type': 'sigma_min', 'predict_x0':
    // False}, set_timesteps(10)
    {"UniPCNoiseMin",
     "UniPCMultistepScheduler",
     "final_sigmas_type=sigma_min,predict_x0=false",
     10,
     -1,
     {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
     {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792,
      6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549,
      0.72359125943039693, 0.3422596990130316, 0.010000500037502575},
     2629.7511616242455,
     {-6.3628219317338095, -6.2379707855927764, 2.6429205458310356, 5.4946964430249094,
      1.7592207100261312, 5.4911241011955516},
     2629.75269,
     {-6.36281919, -6.23797035, 2.64291549, 5.49469852, 1.7592212, 5.49112654}},
    // UniPCNoiseOrder3Bh1Min: UniPCMultistepScheduler {'final_sigmas_type': 'sigma_min',
    // 'predict_x0': False, 'solver_order': 3, 'solver_type': 'bh1'}, set_timesteps(12)
    {"UniPCNoiseOrder3Bh1Min",
     "UniPCMultistepScheduler",
     "final_sigmas_type=sigma_min,predict_x0=false,solver_order=3,solver_type=bh1",
     12,
     -1,
     {999, 916, 832, 749, 666, 583, 500, 416, 333, 250, 166, 83},
     {157.40728081040757, 70.450463968351457, 33.521926895647532, 17.24698300991162,
      9.4889202295252151, 5.5600440690522062, 3.4429671125258228, 2.2129225347942048,
      1.4623566969975685, 0.95803371466223142, 0.58364047704056887, 0.28460538324828927,
      0.010000500037502575},
     3662.1743622444374,
     {-7.5471359848544521, -7.5027201128252647, 3.2537908683684114, 5.6199926674452696,
      3.6653355452060721, 5.6312082834368153},
     3662.17676,
     {-7.54713726, -7.50272083, 3.25379419, 5.61999416, 3.66533852, 5.63121176}},
    // UniPCKarrasV: UniPCMultistepScheduler {'use_karras_sigmas': True, 'prediction_type':
    // 'v_prediction'}, set_timesteps(10)
    {"UniPCKarrasV",
     "UniPCMultistepScheduler",
     "prediction_type=v_prediction,use_karras_sigmas=true",
     10,
     -1,
     {999, 937, 864, 775, 663, 511, 301, 102, 18, 0},
     {157.40728081040749, 85.710522387849778, 44.047404875790811, 21.105410301025287,
      9.2746119511156753, 3.6525679190903184, 1.2463257094660056, 0.34969256737211857,
      0.073926192554626485, 0.010000500037502566, 0},
     154.42731133403561,
     {-0.42222214364301114, -0.41819082997057855, -0.053599678677871007, 0.56426698563932964,
      -0.011700504089679074, 0.57088836236685636},
     154.425079,
     {-0.422216535, -0.418185234, -0.0535969771, 0.564258218, -0.0116966702, 0.570879936}},
    // UniPCDisableCorrector: UniPCMultistepScheduler {'disable_corrector': [0, 3], 'solver_order':
    // 3}, set_timesteps(10)
    {"UniPCDisableCorrector",
     "UniPCMultistepScheduler",
     "disable_corrector=0;3,solver_order=3",
     10,
     -1,
     {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
     {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792,
      6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549,
      0.72359125943039693, 0.3422596990130316, 0},
     4766.4686673441183,
     {-12.559084445022146, -12.509073262431947, 3.5205383372270957, 7.9184877985372735,
      3.7640470042910175, 7.8910035074135649},
     4766.46729,
     {-12.5590858, -12.5090704, 3.52053785, 7.91848135, 3.76404548, 7.8910017}},
    // UniPCNoLowerOrderFinal: UniPCMultistepScheduler {'final_sigmas_type': 'sigma_min',
    // 'solver_order': 3, 'lower_order_final': False}, set_timesteps(10)
    {"UniPCNoLowerOrderFinal",
     "UniPCMultistepScheduler",
     "final_sigmas_type=sigma_min,lower_order_final=false,solver_order=3",
     10,
     -1,
     {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
     {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792,
      6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549,
      0.72359125943039693, 0.3422596990130316, 0.010000500037502575},
     5255.5136761277845,
     {-19.158796441169052, -19.36515223304006, 2.4039611667981431, 8.5504047428482313,
      10.585947905602801, 7.1951877587446988},
     5255.42871,
     {-19.1584759, -19.3648205, 2.40397406, 8.55038261, 10.5856018, 7.19519997}},
    // UniPCExponential: UniPCMultistepScheduler {'use_exponential_sigmas': True}, set_timesteps(10)
    {"UniPCExponential",
     "UniPCMultistepScheduler",
     "use_exponential_sigmas=true",
     10,
     -1,
     {999, 886, 757, 602, 409, 202, 72, 21, 4, 0},
     {157.40728081040763, 53.788711225864652, 18.380505910805105, 6.2809275373507649,
      2.1462984164249894, 0.73342621212462455, 0.25062405326071002, 0.085642447780628447,
      0.029265462617939036, 0.010000500037502575, 0},
     2804.3683028055843,
     {-9.5930973002072282, -9.2208931246682297, 1.9027420245890998, 5.5824672768558061,
      1.9371743959190755, 5.5724498441804986},
     2804.396,
     {-9.5930872, -9.21783161, 1.90275776, 5.58261299, 1.93718839, 5.57252455}},
    // UniPCBeta: UniPCMultistepScheduler {'use_beta_sigmas': True, 'solver_order': 3},
    // set_timesteps(10)
    {"UniPCBeta",
     "UniPCMultistepScheduler",
     "solver_order=3,use_beta_sigmas=true",
     10,
     -1,
     {999, 994, 983, 966, 942, 909, 862, 785, 629, 0},
     {157.40728081040757, 149.99515680331612, 134.49006411014278, 114.05797788068051,
      90.800723992938345, 66.616557317506732, 43.359303429764566, 22.927217200302309,
      7.4221245071289434, 0.010000500037502575, 0},
     16406.047746954431,
     {-31.665023224428619, -32.635687561095367, -19.110693991206059, 5.0911866391122844,
      -7.0090341437273054, 4.0945879576921591},
     16405.918,
     {-31.6651382, -32.6358032, -19.1103802, 5.09124041, -7.00890255, 4.09465742}},
    // UniPCThresholdSample: UniPCMultistepScheduler {'thresholding': True, 'prediction_type':
    // 'sample', 'dynamic_thresholding_ratio': 0.9, 'sample_max_value': 0.8}, set_timesteps(10)
    {"UniPCThresholdSample",
     "UniPCMultistepScheduler",
     "dynamic_thresholding_ratio=0.9,prediction_type=sample,sample_max_value=0.8,thresholding=true",
     10,
     -1,
     {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
     {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792,
      6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549,
      0.72359125943039693, 0.3422596990130316, 0},
     505.38242855526278,
     {-0.77658621840936315, -0.77802528733509757, 0.66940658350319204, 0.63676280397512353,
      0.67478754460142065, 0.6364244399658231},
     505.382385,
     {-0.776585996, -0.778025091, 0.669406593, 0.636762738, 0.674787521, 0.636424363}},
    // UniPCLeading: UniPCMultistepScheduler {'timestep_spacing': 'leading', 'steps_offset': 1},
    // set_timesteps(10)
    {"UniPCLeading",
     "UniPCMultistepScheduler",
     "steps_offset=1,timestep_spacing=leading",
     10,
     -1,
     {901, 811, 721, 631, 541, 451, 361, 271, 181, 91},
     {61.378851490583237, 28.151324312838028, 13.995210056583989, 7.5186820472767977,
      4.3355589172489779, 2.6494379151572613, 1.6802015508177193, 1.0696770680129182,
      0.64376711292560795, 0.31156289773970491, 0},
     1982.6896023179879,
     {-5.5841645785614045, -5.5135963101439884, 1.7476272983986021, 3.6364071583687814,
      1.8753676085362236, 3.6449694176343441},
     1982.68958,
     {-5.58416605, -5.51359749, 1.74762714, 3.6364069, 1.87536752, 3.64496899}},
    // UniPCTrailingZeroSnr: UniPCMultistepScheduler {'timestep_spacing': 'trailing',
    // 'rescale_betas_zero_snr': True, 'beta_schedule': 'scaled_linear', 'beta_start': 0.00085,
    // 'beta_end': 0.012, 'prediction_type': 'v_prediction'}, set_timesteps(10)
    {"UniPCTrailingZeroSnr",
     "UniPCMultistepScheduler",
     "beta_end=0.012,beta_schedule=scaled_linear,beta_start=0.00085,prediction_type=v_prediction,"
     "rescale_betas_zero_snr=true,timestep_spacing=trailing",
     10,
     -1,
     {999, 899, 799, 699, 599, 499, 399, 299, 199, 99},
     {4095.9998779296857, 18.130049481303935, 7.4107028567193565, 4.1141834700374558,
      2.6048547669032747, 1.768080202901162, 1.2413748673554754, 0.87474337766440546,
      0.59475148421938817, 0.35498902562578527, 0},
     131.76164029267218,
     {-0.2640281706171545, -0.26262600321315976, -0.091810795667050416, 0.42323479445196521,
      -0.040069329584581613, 0.42692529679843289},
     131.761551,
     {-0.264027953, -0.262625813, -0.0918107852, 0.423234522, -0.0400693752, 0.426925182}},
    // UniPCCosineMidpoint: UniPCMultistepScheduler {'beta_schedule': 'squaredcos_cap_v2',
    // 'solver_type': 'midpoint'}, set_timesteps(10)
    {"UniPCCosineMidpoint",
     "UniPCMultistepScheduler",
     "beta_schedule=squaredcos_cap_v2,solver_type=midpoint",
     10,
     -1,
     {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
     {20291.169610019886, 6.3645918685379108, 3.1037297297199529, 1.9806974479330259,
      1.3907513454724243, 1.0155505505195104, 0.74028100574490596, 0.52235994025399501,
      0.33746085459378411, 0.17104355328665174, 0},
     1428501.4926043397,
     {-3476.6363334213443, -3474.8185297220321, 1246.253901090691, 1414.853925744166,
      1875.5030488975788, 1408.9824069086148},
     1428510.88,
     {-3476.64331, -3474.84985, 1246.26392, 1414.86548, 1875.50525, 1408.9978}},
    // UniPCFlowShift3: UniPCMultistepScheduler {'use_flow_sigmas': True, 'prediction_type':
    // 'flow_prediction', 'flow_shift': 3.0}, set_timesteps(10)
    {"UniPCFlowShift3",
     "UniPCMultistepScheduler",
     "flow_shift=3,prediction_type=flow_prediction,use_flow_sigmas=true",
     10,
     -1,
     {999, 964, 923, 875, 818, 750, 667, 563, 429, 251},
     {0.99999899999999997, 0.96432397685879567, 0.92316566682048906, 0.87515621094726315,
      0.81842966194111233, 0.75037481259370309, 0.66722185209860096, 0.56331959535406517,
      0.42979452054794515, 0.25187219171243136, 0},
     260.50731259085097,
     {-0.51587513599250401, -0.51276841911269777, -0.10492505815340526, 0.72046471682362778,
      0.03379002924717496, 0.72399871017718109},
     260.507294,
     {-0.515875101, -0.512768328, -0.104925074, 0.720464647, 0.0337900072, 0.723998785}},
    // UniPCFlowOrder3Shift3: UniPCMultistepScheduler {'use_flow_sigmas': True, 'prediction_type':
    // 'flow_prediction', 'flow_shift': 3.0, 'solver_order': 3}, set_timesteps(12)
    {"UniPCFlowOrder3Shift3",
     "UniPCMultistepScheduler",
     "flow_shift=3,prediction_type=flow_prediction,solver_order=3,use_flow_sigmas=true",
     12,
     -1,
     {999, 970, 937, 900, 857, 807, 750, 682, 600, 500, 376, 216},
     {0.99999899999999997, 0.97061937533086284, 0.93757030371203609, 0.9001199760047992,
      0.85732647814910035, 0.80795847750865046, 0.75037481259370309, 0.68233851185609151,
      0.60071942446043158, 0.50099900099900085, 0.37640449438202245, 0.21630295250320911, 0},
     252.32263208449064,
     {-0.51625526964581314, -0.51304256532206605, -0.092419238117847566, 0.69871168415781648,
      0.037030178515816137, 0.70228023638790837},
     252.322662,
     {-0.516255319, -0.513042629, -0.0924192667, 0.698711753, 0.0370301306, 0.702280462}},
    // UniPCFlowDynamic: UniPCMultistepScheduler {'use_flow_sigmas': True, 'prediction_type':
    // 'flow_prediction', 'use_dynamic_shifting': True}, set_timesteps(10, mu=1.15)
    {"UniPCFlowDynamic",
     "UniPCMultistepScheduler",
     "prediction_type=flow_prediction,use_dynamic_shifting=true,use_flow_sigmas=true,mu=1.15",
     10,
     -1,
     {999, 966, 926, 880, 825, 759, 678, 575, 442, 261},
     {0.99999899999999997, 0.96605030973417072, 0.92673229621763775, 0.88066333955987763,
      0.82594143600036052, 0.75987603561252115, 0.67853213798975009, 0.57591672962650453,
      0.44243097604415921, 0.26167818700023543, 0},
     262.56482654082828,
     {-0.51624154187642035, -0.51317030675388775, -0.107566943916328, 0.72469438948350695,
      0.03347038370784311, 0.72821003014026853},
     262.56485,
     {-0.51624155, -0.513170302, -0.10756696, 0.724694431, 0.0334703773, 0.728210092}},
    // UniPCFlowShiftTerminal: UniPCMultistepScheduler {'use_flow_sigmas': True, 'prediction_type':
    // 'flow_prediction', 'flow_shift': 3.0, 'shift_terminal': 0.1}, set_timesteps(10)
    {"UniPCFlowShiftTerminal",
     "UniPCMultistepScheduler",
     "flow_shift=3,prediction_type=flow_prediction,shift_terminal=0.1,use_flow_sigmas=true",
     10,
     -1,
     {999, 957, 907, 849, 781, 699, 599, 474, 314, 99},
     {0.99999899999999997, 0.95708163702592652, 0.90756806645131505, 0.84981254686328411,
      0.78157033805888765, 0.69970014992503748, 0.5996668887408394, 0.47467216185837391,
      0.31404109589041096, 0.099999999999999978, 0},
     236.68438021820634,
     {-0.50768768709272016, -0.50403794054418172, -0.08680558868229328, 0.68268866261969974,
      0.025007401323764122, 0.68654514992519755},
     236.684357,
     {-0.507687688, -0.504037797, -0.0868056044, 0.682688415, 0.0250073578, 0.686545014}},
    // UniPCFlowSigmaMin: UniPCMultistepScheduler {'use_flow_sigmas': True, 'prediction_type':
    // 'flow_prediction', 'flow_shift': 3.0, 'final_sigmas_type': 'sigma_min'}, set_timesteps(8)
    {"UniPCFlowSigmaMin",
     "UniPCMultistepScheduler",
     "final_sigmas_type=sigma_min,flow_shift=3,prediction_type=flow_prediction,use_flow_sigmas="
     "true",
     8,
     -1,
     {999, 954, 900, 833, 750, 643, 500, 301},
     {0.99999899999999997, 0.95459503681483493, 0.9001199760047992, 0.83355548150616465,
      0.75037481259370309, 0.64346895074946475, 0.50099900099900108, 0.30167765128819646,
      0.30167765128819646},
     330.69659509120743,
     {-0.6946969471201303, -0.69042077897438059, -0.02849717895136266, 0.80944054372763696,
      0.15827232116875486, 0.81251609486912169},
     330.696594,
     {-0.694696963, -0.690420806, -0.0284971744, 0.809440494, 0.158272281, 0.812516034}},
    // UniPCFlowBh1SigmaMinTerminal: UniPCMultistepScheduler {'use_flow_sigmas': True,
    // 'prediction_type': 'flow_prediction', 'flow_shift': 2.0, 'solver_type': 'bh1',
    // 'final_sigmas_type': 'sigma_min', 'shift_terminal': 0.2}, set_timesteps(8)
    {"UniPCFlowBh1SigmaMinTerminal",
     "UniPCMultistepScheduler",
     "final_sigmas_type=sigma_min,flow_shift=2,prediction_type=flow_prediction,shift_terminal=0.2,"
     "solver_type=bh1,use_flow_sigmas=true",
     8,
     -1,
     {999, 931, 852, 762, 656, 532, 382, 199},
     {0.99999899999999997, 0.93137981277438642, 0.85296794335503101, 0.76250755320200836,
      0.65699052696720139, 0.53231647952229511, 0.38274749436052657, 0.19999999999999996,
      0.19999999999999996},
     312.35872383708153,
     {-0.6279686299236924, -0.62413941225315961, -0.073483530718220558, 0.80942241240492263,
      0.10134496420858356, 0.81255242903690661},
     312.347046,
     {-0.627974331, -0.624144912, -0.0734650716, 0.809384406, 0.101353392, 0.812514663}},
};

TEST(UniPCSampler, MatchesDiffusersFloat64) {
  for (const auto& g : kUniPCGolden) testing::check_config_golden(g, at::kDouble);
}

// On UniPCExponential diffusers' own float32 run is 3.3e-4 (relative) from its float64 run at
// element 1 (-9.21783 against -9.22089): its sigmas, lambdas and coefficients are float32 and the
// last steps go down to t = 4 and 0. Ours computes the coefficients in double and lands 2e-6 from
// the float64 result, so that case's float32 run is held to the float64 numbers.
TEST(UniPCSampler, MatchesDiffusersFloat32) {
  for (auto g : kUniPCGolden) {
    if (std::string(g.name) == "UniPCExponential") {
      g.sum32 = g.sum64;
      g.elems32 = g.elems64;
    }
    testing::check_config_golden(g, at::kFloat);
  }
}

// diffusers' own full loops (tests/schedulers/test_scheduler_unipc.py at 58eb52c), printed by
// `tests/reference/new_solvers.py --diffusers PATH suite`.
const testing::SuiteGolden kUniPCSuite[] = {
    // unipc test_full_loop_no_noise: UniPCMultistepScheduler, the suite's config
    {"unipc test_full_loop_no_noise", "UniPCMultistepScheduler",
     "beta_end=0.02,beta_schedule=linear,beta_start=0.0001,final_sigmas_type=sigma_min,num_train_"
     "timesteps=1000,solver_order=2,solver_type=bh2",
     -1, 0.2464, 189.23165317474346, 189.231842},
    // unipc test_full_loop_with_karras
    {"unipc test_full_loop_with_karras", "UniPCMultistepScheduler",
     "beta_end=0.02,beta_schedule=linear,beta_start=0.0001,final_sigmas_type=sigma_min,num_train_"
     "timesteps=1000,solver_order=2,solver_type=bh2,use_karras_sigmas=true",
     -1, 0.2925, 224.62704969760358, 224.626755},
    // unipc test_full_loop_with_v_prediction
    {"unipc test_full_loop_with_v_prediction", "UniPCMultistepScheduler",
     "beta_end=0.02,beta_schedule=linear,beta_start=0.0001,final_sigmas_type=sigma_min,num_train_"
     "timesteps=1000,prediction_type=v_prediction,solver_order=2,solver_type=bh2",
     -1, 0.1014, 77.872419600849526, 77.8724823},
    // unipc test_full_loop_with_karras_and_v_prediction
    {"unipc test_full_loop_with_karras_and_v_prediction", "UniPCMultistepScheduler",
     "beta_end=0.02,beta_schedule=linear,beta_start=0.0001,final_sigmas_type=sigma_min,num_train_"
     "timesteps=1000,prediction_type=v_prediction,solver_order=2,solver_type=bh2,use_karras_sigmas="
     "true",
     -1, 0.1966, 150.68881384917367, 150.687302},
    // unipc test_full_loop_with_noise (t_start 8; the suite's sum 315.5757 +- 1e-2)
    {"unipc test_full_loop_with_noise", "UniPCMultistepScheduler",
     "beta_end=0.02,beta_schedule=linear,beta_start=0.0001,final_sigmas_type=sigma_min,num_train_"
     "timesteps=1000,solver_order=2,solver_type=bh2",
     8, 0.4109, 315.57532652849659, 315.575684},
};

TEST(UniPCSampler, DiffusersSuiteFullLoops) {
  for (const auto& g : kUniPCSuite) {
    testing::check_suite_golden(g, at::kDouble);
    testing::check_suite_golden(g, at::kFloat);
  }
}

Tensor unipc_run(const std::string& spec, const TimeGrid& grid, const Denoiser& d,
                 std::vector<Tensor>* x0s = nullptr) {
  SampleContext ctx;
  if (x0s) ctx.on_step = [x0s](const StepInfo& i) { x0s->push_back(i.pred.x0); };
  return sampler_from_spec(spec)->sample(
      testing::model_fn(d), testing::dummy_sample_deter(at::kDouble) * 2 - 1, grid, ctx);
}

TEST(UniPCSampler, OrderOneWithoutCorrectorIsDdim) {
  auto sched = make_schedule("discrete");
  const TimeGrid grid = testing::dpm_grid(*sched, 12, "linspace", "min");
  const Denoiser d = testing::make_denoiser(testing::nonlinear_network(), "epsilon");
  const Tensor ddim = unipc_run("ddim", grid, d);
  for (const char* variant : {"bh1", "bh2"})
    for (const char* x0 : {"true", "false"}) {
      SCOPED_TRACE(std::string(variant) + " predict_x0=" + x0);
      const std::string base =
          std::string("unipc:order=1,variant=") + variant + ",predict_x0=" + x0;
      testing::ExpectTensorNear(unipc_run(base + ",corrector=false", grid, d), ddim, 1e-12, 1e-10,
                                "UniP-1");
      // The corrector changes the result (UniC-1 is second order).
      EXPECT_GT((unipc_run(base, grid, d) - ddim).abs().max().item<double>(), 1e-4);
    }
}

TEST(UniPCSampler, CorrectorOffIsDisableCorrectorEverywhere) {
  auto sched = make_schedule("discrete");
  const TimeGrid grid = testing::dpm_grid(*sched, 6, "linspace", "zero");
  const Denoiser d = testing::make_denoiser(testing::nonlinear_network(), "v_prediction");
  const Tensor off = unipc_run("unipc:order=3,corrector=false", grid, d);
  testing::ExpectTensorNear(unipc_run("unipc:order=3,disable_corrector=0;1;2;3;4;5", grid, d), off,
                            0, 0, "disable all");
  EXPECT_GT((unipc_run("unipc:order=3", grid, d) - off).abs().max().item<double>(), 1e-4);
  // disable_corrector only acts at the steps it lists.
  EXPECT_GT(
      (unipc_run("unipc:order=3,disable_corrector=2", grid, d) - off).abs().max().item<double>(),
      1e-4);
}

// diffusers returns NaN for bh1 and for predict_x0=False when the last sigma is 0 (checked with
// new_solvers.py's harness: all 768 elements NaN); here the last step lands on alpha x0 = x0.
TEST(UniPCSampler, ZeroFinalSigmaLandsOnX0) {
  auto sched = make_schedule("discrete");
  const TimeGrid grid = testing::dpm_grid(*sched, 10, "linspace", "zero");
  const Denoiser d = testing::make_denoiser(testing::nonlinear_network(), "epsilon");
  for (const char* spec : {"unipc:variant=bh1", "unipc:predict_x0=false",
                           "unipc:variant=bh1,lower_order_final=false,order=3"}) {
    SCOPED_TRACE(spec);
    std::vector<Tensor> x0s;
    const Tensor out = unipc_run(spec, grid, d, &x0s);
    ASSERT_TRUE(at::isfinite(out).all().item<bool>());
    if (std::string(spec).find("predict_x0=false") == std::string::npos) {
      testing::ExpectTensorNear(out, x0s.back(), 0, 0, "last x0");
    }
  }
}

TEST(UniPCSampler, StartsAtAlphaZero) {
  auto sched = make_schedule("discrete", {{"rescale_betas_zero_snr", "true"}});
  const TimeGrid grid = make_spacing("trailing")->grid(*sched, 8);
  ASSERT_EQ(grid.front().alpha, 0.0);
  const Denoiser d = testing::make_denoiser(testing::nonlinear_network(), "v_prediction");
  for (const char* spec : {"unipc", "unipc:variant=bh1,order=3"}) {
    SCOPED_TRACE(spec);
    EXPECT_TRUE(at::isfinite(unipc_run(spec, grid, d)).all().item<bool>());
  }
  try {
    unipc_run("unipc:predict_x0=false", grid, d);
    ADD_FAILURE() << "no error for the eps form at alpha = 0";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("alpha = 0"), std::string::npos) << e.what();
  }
}

TEST(UniPCSampler, AliasesConfigAndErrors) {
  EXPECT_EQ(make_sampler("uni_pc")->to_config().at("variant"), "bh1");
  EXPECT_EQ(make_sampler("uni_pc")->to_config().at("order"), "3");
  EXPECT_EQ(make_sampler("uni_pc_bh2")->to_config().at("variant"), "bh2");
  EXPECT_EQ(make_sampler("UniPC")->to_config().at("order"), "3");
  EXPECT_EQ(make_sampler("unipc")->history_size(), 2);
  const Config c{
      {"order", "3"},         {"variant", "bh1"},           {"predict_x0", "false"},
      {"corrector", "false"}, {"disable_corrector", "0;4"}, {"lower_order_final", "false"}};
  EXPECT_EQ(make_sampler("unipc", c)->to_config(), c);
  EXPECT_ERROR_NAMING(make_sampler("unipc", {{"order", "4"}}), "4");
  EXPECT_ERROR_NAMING(make_sampler("unipc", {{"order", "0"}}), "0");
  EXPECT_ERROR_NAMING(make_sampler("unipc", {{"variant", "bh3"}}), "bh3");
  EXPECT_ERROR_NAMING(make_sampler("unipc", {{"disable_corrector", "1.5"}}), "1.5");
  EXPECT_ERROR_NAMING(make_sampler("unipc", {{"disable_corrector", "-1"}}), "-1");
  EXPECT_ERROR_NAMING(make_sampler("unipc", {{"no_such_key", "1"}}), "no_such_key");
  // shift_terminal stretches flow sigmas only (diffusers raises without them).
  EXPECT_ERROR_NAMING(from_diffusers("UniPCMultistepScheduler", {{"shift_terminal", "0.1"}}),
                      "use_flow_sigmas");
  EXPECT_ERROR_NAMING(from_diffusers("UniPCMultistepScheduler",
                                     {{"use_flow_sigmas", "true"}, {"shift_terminal", "1.5"}}),
                      "shift_terminal");
  EXPECT_ERROR_NAMING(from_diffusers("UniPCMultistepScheduler",
                                     {{"use_flow_sigmas", "true"}, {"use_karras_sigmas", "true"}}),
                      "use_karras_sigmas");
  EXPECT_ERROR_NAMING(from_diffusers("UniPCMultistepScheduler", {{"flow_shift", "3"}}),
                      "use_flow_sigmas");
  EXPECT_ERROR_NAMING(from_diffusers("UniPCMultistepScheduler", {{"solver_p", "DDIMScheduler"}}),
                      "solver_p");
  EXPECT_ERROR_NAMING(from_diffusers("UniPCMultistepScheduler", {{"solver_type", "bh3"}}), "bh3");
  EXPECT_ERROR_NAMING(
      from_diffusers("UniPCMultistepScheduler", {{"prediction_type", "flow_prediction"}}),
      "flow_prediction");
}

}  // namespace
}  // namespace diffuse
