// SPDX-License-Identifier: Apache-2.0
// Flow matching against diffusers (58eb52c): FlowMatchEulerDiscreteScheduler (static shift, dynamic
// exponential / linear shift with mu, shift_terminal, Karras, exponential and beta sigmas, another
// num_train_timesteps), FlowMatchHeunDiscreteScheduler and DPMSolverMultistep/SinglestepScheduler
// with use_flow_sigmas
// (flow_prediction and epsilon, orders 2 and 3, SDE, thresholding), FlowMatchEuler's
// stochastic_sampling (euler_ancestral split=renoise), all through from_diffusers(): grid (model
// times and sigmas) and final sample in float64 (1e-6 relative) and float32 (1e-4). Golden values:
// `/usr/bin/python3 tests/reference/flow_match.py --diffusers PATH` (tests/reference/README.md).
#include "samplers/dpm_fixtures.h"

#include <diffuse/diffusers.h>
#include <diffuse/gaussian_mixture.h>
#include <diffuse/registry.h>
#include <diffuse/samplers/euler_ancestral.h>
#include <diffuse/schedules/flow.h>
#include <diffuse/schedules/spacing/flow_match.h>

namespace diffuse::testing {
namespace {

const std::vector<ConfigGolden> kFlowGolden = {
    // EulerDefault: FlowMatchEulerDiscreteScheduler {}, set_timesteps(10)
    {"EulerDefault",
     "FlowMatchEulerDiscreteScheduler",
     "",
     10,
     -1,
     {1000, 889, 778, 667, 556, 445, 334, 223, 112, 1},
     {1, 0.88900000000000001, 0.77800000000000002, 0.66700000000000004, 0.55600000000000005,
      0.44500000000000001, 0.33400000000000002, 0.223, 0.112, 0.001, 0},
     256.5009445068024,
     {-0.52983160489306746, -0.52676810856505651, -0.051093550278177143, 0.66708803854593413,
      0.08868442604280459, 0.67017515391493854},
     256.500946,
     {-0.529831588, -0.526768148, -0.0510935821, 0.667087972, 0.0886844024, 0.670175076}},
    // EulerShift3: FlowMatchEulerDiscreteScheduler {'shift': 3.0}, set_timesteps(10)
    {"EulerShift3",
     "FlowMatchEulerDiscreteScheduler",
     "shift=3",
     10,
     -1,
     {1000, 960.12931034482779, 913.3489461358314, 857.69230769230762, 790.36827195467424,
      707.27848101265818, 602.15053763440869, 464.87603305785132, 278.04878048780489,
      8.9285714285714306},
     {1, 0.96012931034482774, 0.9133489461358314, 0.85769230769230764, 0.7903682719546743,
      0.70727848101265822, 0.60215053763440873, 0.4648760330578513, 0.2780487804878049,
      0.0089285714285714298, 0},
     272.95250735286231,
     {-0.53018024105076633, -0.52742040763178388, -0.077363925102017256, 0.70893714400630581,
      0.080481144883679329, 0.71191074384130582},
     272.952515,
     {-0.530180216, -0.527420461, -0.0773639604, 0.708937168, 0.080481112, 0.711910725}},
    // EulerShift3OneStep: FlowMatchEulerDiscreteScheduler {'shift': 3.0}, set_timesteps(1)
    {"EulerShift3OneStep",
     "FlowMatchEulerDiscreteScheduler",
     "shift=3",
     1,
     -1,
     {1000},
     {1, 0},
     308.83077529290284,
     {-0.75294079594186947, -0.75266851687970904, 0.27057130022154208, 0.30484789001536117,
      0.40610531865360794, 0.30387309206358393},
     308.830811,
     {-0.752940774, -0.7526685, 0.270571291, 0.304847896, 0.40610531, 0.303873122}},
    // EulerDynamicExponential: FlowMatchEulerDiscreteScheduler {'use_dynamic_shifting': True},
    // set_timesteps(8, mu=0.63)
    {"EulerDynamicExponential",
     "FlowMatchEulerDiscreteScheduler",
     "use_dynamic_shifting=true,mu=0.63",
     8,
     -1,
     {1000, 918.55894885260579, 824.58001228891499, 714.92641709657471, 585.31983139329009,
      429.76908222285664, 239.61764520654117, 1.875964213224496},
     {1, 0.91855894885260581, 0.82458001228891498, 0.71492641709657467, 0.58531983139329014,
      0.42976908222285665, 0.23961764520654116, 0.0018759642132244959, 0},
     268.86574336241114,
     {-0.53134267114484135, -0.52853836459167891, -0.067803082699971692, 0.69516962667167692,
      0.085491979490122674, 0.69813957061985887},
     268.865753,
     {-0.531342685, -0.528538346, -0.0678031147, 0.695169628, 0.0854919255, 0.698139608}},
    // EulerDynamicLinear: FlowMatchEulerDiscreteScheduler {'use_dynamic_shifting': True,
    // 'time_shift_type': 'linear'}, set_timesteps(8, mu=0.8)
    {"EulerDynamicLinear",
     "FlowMatchEulerDiscreteScheduler",
     "time_shift_type=linear,use_dynamic_shifting=true,mu=0.8",
     8,
     -1,
     {1000, 827.75268112693539, 666.97779851990128, 516.56611930186796, 375.54694336792096,
      243.06713138354286, 118.3738306760016, 0.8001600320064014},
     {1, 0.82775268112693534, 0.66697779851990124, 0.51656611930186791, 0.37554694336792094,
      0.24306713138354286, 0.1183738306760016, 0.00080016003200640139, 0},
     256.61100342278212,
     {-0.53361156671212784, -0.53059644764354386, -0.043032989272082912, 0.65610379398016483,
      0.097758004875249008, 0.65911388690380357},
     256.611023,
     {-0.533611596, -0.530596435, -0.0430330299, 0.65610379, 0.0977579504, 0.659113944}},
    // EulerShiftTerminal: FlowMatchEulerDiscreteScheduler {'shift': 3.0, 'shift_terminal': 0.1},
    // set_timesteps(12)
    {"EulerShiftTerminal",
     "FlowMatchEulerDiscreteScheduler",
     "shift=3,shift_terminal=0.1",
     12,
     -1,
     {1000, 970.79953650057928, 937.58513931888547, 899.46808510638289, 855.27638190954781,
      803.43213728549154, 741.75918018787354, 667.16981132075466, 575.13171759747104,
      458.71121718377094, 306.74002751031651, 100.00000000000009},
     {1, 0.97079953650057926, 0.93758513931888543, 0.89946808510638288, 0.8552763819095478,
      0.80343213728549157, 0.74175918018787357, 0.6671698113207547, 0.57513171759747106,
      0.45871121718377095, 0.30674002751031648, 0.10000000000000009, 0},
     265.80842606540818,
     {-0.52876318366622754, -0.52583789786402613, -0.065449721742193601, 0.69482062883913931,
      0.084097072173855689, 0.69785344042966146},
     265.808411,
     {-0.528763175, -0.525837898, -0.0654497594, 0.694820702, 0.0840970054, 0.697853446}},
    // EulerKarrasShift3: FlowMatchEulerDiscreteScheduler {'shift': 3.0, 'use_karras_sigmas': True},
    // set_timesteps(10)
    {"EulerKarrasShift3",
     "FlowMatchEulerDiscreteScheduler",
     "shift=3,use_karras_sigmas=true",
     10,
     -1,
     {1000, 675.58033604150683, 445.90477535887857, 286.69393446915399, 178.92500217377167,
      107.92737962531179, 62.588629101894192, 34.663546878275604, 18.179175582702726,
      8.9285714285714306},
     {1, 0.6755803360415068, 0.44590477535887857, 0.28669393446915398, 0.17892500217377166,
      0.10792737962531179, 0.062588629101894194, 0.034663546878275601, 0.018179175582702725,
      0.0089285714285714298, 0},
     249.29327047432233,
     {-0.54534975405209618, -0.54226218558392525, -0.0097197758199592463, 0.60015831721029456,
      0.12595220842913185, 0.60301453690187046},
     249.293274,
     {-0.545349777, -0.542262137, -0.00971980672, 0.600158393, 0.125952169, 0.603014648}},
    // EulerExponential: FlowMatchEulerDiscreteScheduler {'use_exponential_sigmas': True},
    // set_timesteps(10)
    {"EulerExponential",
     "FlowMatchEulerDiscreteScheduler",
     "use_exponential_sigmas=true",
     10,
     -1,
     {1000, 464.1588833612779, 215.4434690031884, 100.00000000000001, 46.415888336127793,
      21.544346900318839, 10.000000000000004, 4.6415888336127811, 2.1544346900318843,
      1.0000000000000002},
     {1, 0.46415888336127792, 0.21544346900318839, 0.10000000000000002, 0.046415888336127795,
      0.021544346900318839, 0.010000000000000004, 0.0046415888336127807, 0.0021544346900318843,
      0.0010000000000000002, 0},
     242.24901205914529,
     {-0.57578621317225709, -0.57271685100305025, 0.039777203314918727, 0.4833582506450505,
      0.17221046170705251, 0.4853855169341833},
     242.249023,
     {-0.575786173, -0.572716832, 0.0397771709, 0.483358234, 0.17221044, 0.485385478}},
    // EulerBetaShift3: FlowMatchEulerDiscreteScheduler {'shift': 3.0, 'use_beta_sigmas': True},
    // set_timesteps(10)
    {"EulerBetaShift3",
     "FlowMatchEulerDiscreteScheduler",
     "shift=3,use_beta_sigmas=true",
     10,
     -1,
     {1000, 953.32864510764534, 855.69891265449007, 727.04575646146247, 580.60358293901174,
      428.32498848955976, 281.88281496710903, 153.22965877408149, 55.599926320926016,
      8.9285714285714306},
     {1, 0.95332864510764537, 0.85569891265449005, 0.72704575646146252, 0.58060358293901171,
      0.42832498848955974, 0.28188281496710904, 0.15322965877408148, 0.055599926320926016,
      0.0089285714285714298, 0},
     260.19506968578474,
     {-0.53285467884686077, -0.52985957127200067, -0.04474982378887802, 0.66731040734666269,
      0.099345722509460499, 0.67023979969194625},
     260.195068,
     {-0.532854676, -0.529859543, -0.0447498634, 0.667310357, 0.0993456915, 0.670239806}},
    // EulerShift3Train500: FlowMatchEulerDiscreteScheduler {'shift': 3.0, 'num_train_timesteps':
    // 500}, set_timesteps(7)
    {"EulerShift3Train500",
     "FlowMatchEulerDiscreteScheduler",
     "num_train_timesteps=500,shift=3",
     7,
     -1,
     {500, 468.95994028365271, 429.11931818181824, 376.11717974180738, 302.14115781126094,
      191.67078596144339, 8.8582677165354333},
     {1, 0.93791988056730546, 0.85823863636363651, 0.75223435948361472, 0.60428231562252188,
      0.38334157192288676, 0.017716535433070866, 0},
     202.04778703745157,
     {-0.3826369126024794, -0.37931311690475178, -0.13812190887026921, 0.72037888006109285,
      -0.066876471113242159, 0.72553451185650553},
     202.047791,
     {-0.382636875, -0.379313082, -0.138121933, 0.720378816, -0.0668764934, 0.725534618}},
    // EulerStochasticShift3: FlowMatchEulerDiscreteScheduler {'shift': 3.0, 'stochastic_sampling':
    // True}, set_timesteps(8), seed 0
    {"EulerStochasticShift3",
     "FlowMatchEulerDiscreteScheduler",
     "shift=3,stochastic_sampling=true",
     8,
     0,
     {1000, 947.54253308128546, 882.78775079197464, 800.83732057416296, 693.79310344827593,
      548.04560260586334, 337.9721669980122, 8.9285714285714306},
     {1, 0.94754253308128544, 0.88278775079197469, 0.8008373205741629, 0.69379310344827594,
      0.54804560260586332, 0.33797216699801219, 0.0089285714285714298, 0},
     227.42613405344866,
     {-0.42482975915833693, -0.15486072062004613, -0.32656346353676702, -0.011584487289345302,
      -0.2732970568702684, -0.0049423956500237549},
     227.426132,
     {-0.424829781, -0.154860735, -0.326563448, -0.0115844728, -0.273297101, -0.00494242506}},
    // HeunDefault: FlowMatchHeunDiscreteScheduler {}, set_timesteps(6)
    {"HeunDefault",
     "FlowMatchHeunDiscreteScheduler",
     "",
     6,
     -1,
     {1000, 800.20000000000005, 600.39999999999998, 400.59999999999991, 200.79999999999995, 1},
     {1, 0.80020000000000002, 0.60039999999999993, 0.4005999999999999, 0.20079999999999995, 0.001,
      0},
     252.55354394414024,
     {-0.53388045439207577, -0.53035361539929271, -0.048138960695970914, 0.68162770222765501,
      0.084075901808412304, 0.68507032969881798},
     252.553513,
     {-0.533878744, -0.530353189, -0.0481391288, 0.681624711, 0.0840759203, 0.685069978}},
    // HeunShift3: FlowMatchHeunDiscreteScheduler {'shift': 3.0}, set_timesteps(8)
    {"HeunShift3",
     "FlowMatchHeunDiscreteScheduler",
     "shift=3",
     8,
     -1,
     {1000, 947.54253308128546, 882.78775079197464, 800.83732057416296, 693.79310344827593,
      548.04560260586334, 337.9721669980122, 8.9285714285714306},
     {1, 0.94754253308128544, 0.88278775079197469, 0.8008373205741629, 0.69379310344827594,
      0.54804560260586332, 0.33797216699801219, 0.0089285714285714298, 0},
     251.95468453686254,
     {-0.52895846213085995, -0.52551611740111792, -0.035781842306335021, 0.67073217430361054,
      0.098286729997549546, 0.67393770633817207},
     251.954681,
     {-0.528958023, -0.525515676, -0.0357819125, 0.670732617, 0.0982867107, 0.673937321}},
    // DpmFlow2Shift3: DPMSolverMultistepScheduler {'use_flow_sigmas': True, 'prediction_type':
    // 'flow_prediction', 'flow_shift': 3.0}, set_timesteps(10)
    {"DpmFlow2Shift3",
     "DPMSolverMultistepScheduler",
     "flow_shift=3,prediction_type=flow_prediction,use_flow_sigmas=true",
     10,
     -1,
     {999, 963, 922, 874, 817, 749, 666, 562, 428, 249},
     {0.99966644429619733, 0.963941104996069, 0.92272167487684742, 0.87463520386892357,
      0.81780971438966699, 0.74962481240620316, 0.66629613161405066, 0.5621483056146056,
      0.42826521863389538, 0.24979163193865642, 0},
     261.70905863770747,
     {-0.51602777092380903, -0.51292860463276702, -0.10396114026932682, 0.72257462729639921,
      0.036815579745029331, 0.72609856040249876},
     261.709015,
     {-0.516027689, -0.512928545, -0.10396117, 0.722574651, 0.0368155092, 0.726098418}},
    // DpmFlow3HeunShift3: DPMSolverMultistepScheduler {'use_flow_sigmas': True, 'prediction_type':
    // 'flow_prediction', 'flow_shift': 3.0, 'solver_order': 3, 'solver_type': 'heun'},
    // set_timesteps(12)
    {"DpmFlow3HeunShift3",
     "DPMSolverMultistepScheduler",
     "flow_shift=3,prediction_type=flow_prediction,solver_order=3,solver_type=heun,use_flow_sigmas="
     "true",
     12,
     -1,
     {999, 970, 937, 899, 856, 807, 749, 681, 599, 499, 374, 214},
     {0.99966644429619733, 0.97024545294013775, 0.93714821763602252, 0.8996397838703224,
      0.8567753001715267, 0.80731932579081056, 0.74962481240620316, 0.68144611186903137,
      0.5996398559423769, 0.49966655551850619, 0.37471867966991745, 0.21410201457351061, 0},
     250.90806065572465,
     {-0.51507001591306656, -0.51181059346368718, -0.094247354801433786, 0.69862832672642361,
      0.033760428107616286, 0.70225408362726172},
     250.90802,
     {-0.515069962, -0.511810601, -0.094247371, 0.698628485, 0.0337604359, 0.702254117}},
    // DpmFlow2Dynamic: DPMSolverMultistepScheduler {'use_flow_sigmas': True, 'prediction_type':
    // 'flow_prediction', 'use_dynamic_shifting': True}, set_timesteps(10, mu=1.15)
    {"DpmFlow2Dynamic",
     "DPMSolverMultistepScheduler",
     "prediction_type=flow_prediction,use_dynamic_shifting=true,use_flow_sigmas=true,mu=1.15",
     10,
     -1,
     {999, 965, 926, 880, 825, 759, 677, 574, 440, 259},
     {0.99968314670472946, 0.96568530545712616, 0.92630726904707394, 0.88016216812870929,
      0.82534166295127565, 0.75914541907976829, 0.67762267867323145, 0.57475372173576422,
      0.44089147714472143, 0.25954472739575973, 0},
     263.52348441878689,
     {-0.51624315598209225, -0.51317728983893063, -0.10632047580103168, 0.72632091273966937,
      0.036518659972612624, 0.72982895883438759},
     263.523468,
     {-0.5162431, -0.513177216, -0.106320515, 0.726320863, 0.0365186334, 0.729828954}},
    // DpmFlowThresholdShift3: DPMSolverMultistepScheduler {'use_flow_sigmas': True,
    // 'prediction_type': 'flow_prediction', 'flow_shift': 3.0, 'thresholding': True,
    // 'sample_max_value': 0.5}, set_timesteps(10)
    {"DpmFlowThresholdShift3",
     "DPMSolverMultistepScheduler",
     "flow_shift=3,prediction_type=flow_prediction,sample_max_value=0.5,thresholding=true,use_flow_"
     "sigmas=true",
     10,
     -1,
     {999, 963, 922, 874, 817, 749, 666, 562, 428, 249},
     {0.99966644429619733, 0.963941104996069, 0.92272167487684742, 0.87463520386892357,
      0.81780971438966699, 0.74962481240620316, 0.66629613161405066, 0.5621483056146056,
      0.42826521863389538, 0.24979163193865642, 0},
     706.69321296591761,
     {-1, -1, -0.121382842258778, 1, 1, 1},
     706.693176,
     {-1, -1, -0.121383034, 1, 1, 1}},
    // DpmFlowEpsilonShift2: DPMSolverMultistepScheduler {'use_flow_sigmas': True,
    // 'flow_shift': 2.0}, set_timesteps(10)
    // DpmFlowEpsilonShift2: DPMSolverMultistepScheduler {'use_flow_sigmas': True,
    // 'flow_shift': 2.0}, set_timesteps(10)
    {"DpmFlowEpsilonShift2",
     "DPMSolverMultistepScheduler",
     "flow_shift=2,use_flow_sigmas=true",
     10,
     -1,
     {999, 946, 888, 823, 749, 666, 571, 461, 333, 181},
     {0.99949974987493739, 0.94686956979621928, 0.88839484215206765, 0.82304478314600127,
      0.74953107415280729, 0.66622207402467493, 0.57102029151186051, 0.46118335000384714,
      0.33305550925154187, 0.1816528775343213, 0},
     144851.59192103837,
     {-353.51990604620073, -353.42480621648423, 124.81900193031299, 145.39601087178556,
      188.41699993327228, 144.70382150878717},
     144848.406,
     {-353.515015, -353.420013, 124.817688, 145.390259, 188.415512, 144.699463}},
    // DpmFlowSde2Shift3: DPMSolverMultistepScheduler {'use_flow_sigmas': True, 'prediction_type':
    // 'flow_prediction', 'flow_shift': 3.0, 'algorithm_type': 'sde-dpmsolver++'},
    // set_timesteps(10), seed 0
    {"DpmFlowSde2Shift3",
     "DPMSolverMultistepScheduler",
     "algorithm_type=sde-dpmsolver++,flow_shift=3,prediction_type=flow_prediction,use_flow_sigmas="
     "true",
     10,
     0,
     {999, 963, 922, 874, 817, 749, 666, 562, 428, 249},
     {0.99966644429619733, 0.963941104996069, 0.92272167487684742, 0.87463520386892357,
      0.81780971438966699, 0.74962481240620316, 0.66629613161405066, 0.5621483056146056,
      0.42826521863389538, 0.24979163193865642, 0},
     303.98341382200363,
     {-0.36262551884159433, -0.015892568348886235, 0.20394557630014615, 0.69134220346232667,
      -0.3812262771627522, -0.18750923573262973},
     303.983398,
     {-0.36262548, -0.0158926025, 0.203945532, 0.691342115, -0.381226301, -0.187509239}},
    // DpmSingleFlow2Shift3: DPMSolverSinglestepScheduler {'use_flow_sigmas': True,
    // 'prediction_type': 'flow_prediction', 'flow_shift': 3.0}, set_timesteps(10)
    {"DpmSingleFlow2Shift3",
     "DPMSolverSinglestepScheduler",
     "flow_shift=3,prediction_type=flow_prediction,use_flow_sigmas=true",
     10,
     -1,
     {999, 963, 922, 874, 817, 749, 666, 562, 428, 249},
     {0.99966644429619733, 0.963941104996069, 0.92272167487684742, 0.87463520386892357,
      0.81780971438966699, 0.74962481240620316, 0.66629613161405066, 0.5621483056146056,
      0.42826521863389538, 0.24979163193865642, 0},
     269.11798694299512,
     {-0.52381941323505077, -0.52093355449181, -0.089351086039273914, 0.71860189017170761,
      0.061901385106710366, 0.72180606991739305},
     269.117981,
     {-0.523819447, -0.520933509, -0.0893511251, 0.718601942, 0.0619013235, 0.721806169}},
};

TEST(FlowMatch, MatchesDiffusersFloat64) {
  for (const auto& g : kFlowGolden) check_config_golden(g, at::kDouble);
}

TEST(FlowMatch, MatchesDiffusersFloat32) {
  for (const auto& g : kFlowGolden) check_config_golden(g, at::kFloat);
}

// The flow velocity on any schedule: x0 = (x - sigma v) / (alpha + sigma), eps = (x + alpha v) /
// (alpha + sigma). The exact Gaussian-mixture denoiser asked for v = eps - x0 gives the same
// (x0, eps) as the one asked for eps, on the flow schedule (pure noise excepted: eps cannot give x0
// at alpha = 0) and on a VP schedule.
TEST(FlowMatch, FlowPredictionGivesTheSameDenoiserAsEpsilon) {
  const GaussianMixture gmm = GaussianMixture::preset("mixture_2d");
  const Tensor x = gmm.sample(16, 3).x0 + 0.7;
  for (const std::string sched : {"flow", "vp"}) {
    SCOPED_TRACE(sched);
    std::shared_ptr<const NoiseSchedule> s = make_schedule(sched);
    const Denoiser eps(gmm.network(s, Parameterization::kEpsilon));
    DenoiserOptions fo;
    fo.prediction_type = Parameterization::kFlow;
    const Denoiser flow(gmm.network(s, Parameterization::kFlow), fo);
    for (double frac : {0.05, 0.3, 0.7, 0.95}) {
      const TimePoint p = s->at(s->t_min() + frac * (s->t_max() - s->t_min()));
      const Prediction a = eps(x, p, {}), b = flow(x, p, {});
      ExpectTensorNear(b.x0, a.x0, 1e-12, 1e-10, "x0");
      ExpectTensorNear(b.eps, a.eps, 1e-12, 1e-10, "eps");
    }
  }
  // At sigma = 1 the flow prediction still gives x0 (= x - v) and eps (= x).
  std::shared_ptr<const NoiseSchedule> fs = make_schedule("flow");
  DenoiserOptions fo;
  fo.prediction_type = Parameterization::kFlow;
  const Denoiser flow(gmm.network(fs, Parameterization::kFlow), fo);
  const Prediction p = flow(x, fs->at(fs->t_max()), {});
  ExpectTensorNear(p.eps, x, 0, 0, "eps at sigma = 1");
  ExpectTensorNear(p.x0, gmm.x0(x, fs->at(fs->t_max())), 1e-12, 1e-10, "x0 at sigma = 1");
}

// Euler on the flow schedule is diffusers' FlowMatchEuler step x + (sigma' - sigma) v, which is
// also DDIM (x' = alpha' x0 + sigma' eps): the three agree from sigma = 1 on.
TEST(FlowMatch, EulerIsTheVelocityStepAndDdim) {
  const GaussianMixture gmm = GaussianMixture::preset("mixture_2d");
  std::shared_ptr<const NoiseSchedule> s = make_schedule("flow", {{"shift", "3"}});
  DenoiserOptions fo;
  fo.prediction_type = Parameterization::kFlow;
  const Network net = gmm.network(s, Parameterization::kFlow);
  const Denoiser d(net, fo);
  const TimeGrid grid = make_spacing("flow_match")->grid(*s, 6);
  const Tensor x = at::randn({32, 2}, at::TensorOptions().dtype(at::kDouble));
  SampleContext ctx;
  ctx.schedule = s.get();
  const Tensor euler = make_sampler("euler")->sample(model_fn(d), x, grid, ctx);
  const Tensor ddim = make_sampler("ddim")->sample(model_fn(d), x, grid, ctx);
  Tensor v_step = x.clone();
  for (size_t i = 0; i + 1 < grid.size(); ++i) {
    const Tensor t = at::full({x.size(0)}, grid[i].t, x.options());
    v_step = v_step + (grid[i + 1].sigma - grid[i].sigma) * net(v_step, t, {});
  }
  ExpectTensorNear(euler, v_step, 1e-12, 1e-10, "euler vs the velocity step");
  ExpectTensorNear(ddim, v_step, 1e-12, 1e-10, "ddim vs the velocity step");
}

/// One run of ComfyUI's sample_euler_ancestral_RF (02159d8) on diffusers' FlowMatchEuler grid
/// (shift, steps) with flow_match.py's velocity model (tests/reference/comfyui_rf.py): eta,
/// s_noise, noise seed, sum |x| and x.flatten()[0, 1, 100, 383, 500, 767], float64.
struct ComfyRfGolden {
  const char* name;
  double shift;
  int64_t steps;
  double eta, s_noise;
  int64_t seed;
  double sum;
  std::vector<double> elems;
};

const std::vector<ComfyRfGolden> kComfyRf = {
    // Shift3Eta1: shift 3, 8 steps, eta 1, s_noise 1, seed 0
    {"Shift3Eta1",
     3,
     8,
     1,
     1,
     0,
     298.43546631104277,
     {-0.64191245823461174, -0.068275453080164597, -0.40126036582014268, -0.030450652267818738,
      0.08626953890655234, -0.12509212030261871}},
    // Shift1EtaHalf: shift 1, 10 steps, eta 0.5, s_noise 1, seed 3
    {"Shift1EtaHalf",
     1,
     10,
     0.5,
     1,
     3,
     287.24518858593217,
     {-0.81813014306002974, 1.2299152198368362, -0.33192073170837483, -0.38508006424278984,
      0.48059541383179244, 0.81102181447583532}},
    // Shift3Eta1Snoise07: shift 3, 6 steps, eta 1, s_noise 0.7, seed 5
    {"Shift3Eta1Snoise07",
     3,
     6,
     1,
     0.7,
     5,
     244.04938584984581,
     {-0.059188793124457427, -0.58629065241180267, -0.1426975159826688, -0.43993689771500505,
      0.085593711508054296, -0.38151716163683103}},
};

// euler_ancestral on the flow schedule takes ComfyUI's rectified-flow rule (split=auto -> flow), as
// ComfyUI does for CONST model sampling; split=ve (k-diffusion's rule in sigma_ve) is another
// process there.
TEST(FlowMatch, EulerAncestralIsComfyUisRectifiedFlowRule) {
  for (const auto& g : kComfyRf) {
    SCOPED_TRACE(g.name);
    const DiffusersScheduler s =
        from_diffusers("FlowMatchEulerDiscreteScheduler", {{"shift", format_double(g.shift)}});
    const TimeGrid grid = s.grid(g.steps);
    const Denoiser d = s.denoiser(nonlinear_network());
    const Tensor x = dummy_sample_deter(at::kDouble) * 2 - 1;
    auto run = [&](AncestralRule rule) {
      SampleContext ctx;
      ctx.schedule = s.schedule.get();
      const auto noise = make_torch_noise(static_cast<uint64_t>(g.seed));
      ctx.noise = noise.get();
      const EulerAncestralSampler sampler(
          EulerAncestralOptions().eta(g.eta).s_noise(g.s_noise).split(rule));
      return sampler.sample(model_fn(d), x, grid, ctx);
    };
    const Tensor out = run(AncestralRule::automatic);
    ExpectTensorNear(golden_elems(out), at::tensor(g.elems, at::kDouble), 1e-12, 1e-9, "elements");
    EXPECT_NEAR(out.abs().sum().item<double>(), g.sum, 1e-9 * g.sum);
    ExpectTensorNear(run(AncestralRule::flow), out, 0, 0, "split=flow is what auto takes on flow");
    EXPECT_GT((run(AncestralRule::ve) - out).abs().max().item<double>(), 1e-3);
  }
}

// The stochastic samplers' steps are the same process in every scaling of x_t = alpha x0 + sigma
// eps: run on the vp schedule and on the flow schedule at the same log-SNR points (flow sigma =
// sigma / (alpha + sigma)), from the same noise scaled by alpha + sigma, they land on the same
// samples. In particular euler_ancestral's flow rule is defined on every schedule, and DDPM's
// posterior is the flow-appropriate ancestral step without a flow special case.
TEST(FlowMatch, AncestralStepsAreTheSameProcessInEveryScaling) {
  const GaussianMixture gmm = GaussianMixture::preset("mixture_2d");
  std::shared_ptr<const NoiseSchedule> vp = make_schedule("vp");
  std::shared_ptr<const NoiseSchedule> flow = make_schedule("flow");
  const auto& fs = dynamic_cast<const FlowSchedule&>(*flow);
  const TimeGrid vp_grid = make_spacing("log_snr_uniform")->grid(*vp, 12);
  TimeGrid flow_grid;
  for (const TimePoint& p : vp_grid)
    flow_grid.push_back(p.is_clean() ? flow->clean_point()
                                     : fs.at_sigma(p.sigma / (p.alpha + p.sigma)));
  const Denoiser dv(gmm.network(vp)), df(gmm.network(flow, Parameterization::kFlow), [] {
    DenoiserOptions o;
    o.prediction_type = Parameterization::kFlow;
    return o;
  }());
  const Tensor z = at::randn({64, 2}, detail::cpu_generator(4), at::kDouble);
  const double n0 = vp_grid[0].alpha + vp_grid[0].sigma;
  for (const std::string spec :
       {"euler_ancestral:split=flow", "euler_ancestral:split=ve", "euler_ancestral:split=renoise",
        "euler_ancestral:split=flow,eta=0.4", "ddpm", "dpmpp_2m_sde",
        "dpm_solver_pp_sde:order=1"}) {
    SCOPED_TRACE(spec);
    const auto sampler = Registry<Sampler>::get().make_from_spec(spec);
    auto run = [&](const Denoiser& d, const NoiseSchedule& s, const TimeGrid& grid,
                   const Tensor& x) {
      SampleContext ctx;
      ctx.schedule = &s;
      const auto noise = make_torch_noise(9);
      ctx.noise = noise.get();
      return sampler->sample(model_fn(d), x, grid, ctx);
    };
    const Tensor a = run(dv, *vp, vp_grid, z * n0), b = run(df, *flow, flow_grid, z);
    ExpectTensorNear(a, b, 1e-9, 1e-8, "vp vs flow");
  }
}

TEST(FlowMatch, FromDiffusersRefusesWhatItCannotReproduce) {
  const std::string euler = "FlowMatchEulerDiscreteScheduler";
  EXPECT_ERROR_NAMING(from_diffusers(euler, {{"invert_sigmas", "true"}}), "invert_sigmas");
  EXPECT_ERROR_NAMING(
      from_diffusers(euler, {{"use_beta_sigmas", "true"}, {"use_karras_sigmas", "true"}}),
      "only one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas");
  EXPECT_ERROR_NAMING(from_diffusers(euler, {{"use_dynamic_shifting", "true"}}), "needs mu");
  EXPECT_ERROR_NAMING(from_diffusers(euler, {{"mu", "0.5"}}), "mu=0.5 is only used with");
  EXPECT_ERROR_NAMING(from_diffusers(euler, {{"time_shift_type", "cubic"}}), "cubic");
  const std::string dpm = "DPMSolverMultistepScheduler";
  EXPECT_ERROR_NAMING(from_diffusers(dpm, {{"prediction_type", "flow_prediction"}}),
                      "flow_prediction needs use_flow_sigmas=true");
  EXPECT_ERROR_NAMING(from_diffusers(dpm, {{"flow_shift", "3"}}),
                      "flow_shift=3 needs use_flow_sigmas");
  EXPECT_ERROR_NAMING(
      from_diffusers(dpm, {{"use_flow_sigmas", "true"}, {"use_karras_sigmas", "true"}}),
      "use_karras_sigmas");
  EXPECT_ERROR_NAMING(
      from_diffusers(dpm, {{"use_flow_sigmas", "true"}, {"final_sigmas_type", "sigma_min"}}),
      "final_sigmas_type=sigma_min with use_flow_sigmas");
  EXPECT_ERROR_NAMING(from_diffusers(dpm, {{"use_flow_sigmas", "true"},
                                           {"use_dynamic_shifting", "true"},
                                           {"time_shift_type", "linear"},
                                           {"mu", "1"}}),
                      "linear");
}

}  // namespace
}  // namespace diffuse::testing
