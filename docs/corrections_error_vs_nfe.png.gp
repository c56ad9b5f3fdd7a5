set terminal pngcairo size 1200,800
set output 'docs/corrections_error_vs_nfe.png'
set termoption noenhanced
set datafile separator ','
set logscale xy
set xlabel 'network evaluations'
set ylabel 'sliced W2 to the true mixture'
set key outside right
set title 'Corrections on the imperfect Gaussian-mixture testbed'
plot 'docs/corrections_error_vs_nfe.csv' using (strcol(1) eq 'ddim' && strcol(2) eq 'none' ? $4 : 1/0):5 with linespoints title 'ddim', \
     'docs/corrections_error_vs_nfe.csv' using (strcol(1) eq 'ddim' && strcol(2) eq 'epsilon_scaling:b=1.03' ? $4 : 1/0):5 with linespoints title 'ddim + epsilon_scaling', \
     'docs/corrections_error_vs_nfe.csv' using (strcol(1) eq 'ddim' && strcol(2) eq 'time_shift:window=30 cutoff=300' ? $4 : 1/0):5 with linespoints title 'ddim + time_shift', \
     'docs/corrections_error_vs_nfe.csv' using (strcol(1) eq 'dpmpp_2m' && strcol(2) eq 'none' ? $4 : 1/0):5 with linespoints title 'dpmpp_2m', \
     'docs/corrections_error_vs_nfe.csv' using (strcol(1) eq 'dpmpp_2m' && strcol(2) eq 'epsilon_scaling:b=1.03' ? $4 : 1/0):5 with linespoints title 'dpmpp_2m + epsilon_scaling', \
     'docs/corrections_error_vs_nfe.csv' using (strcol(1) eq 'dpmpp_2m' && strcol(2) eq 'time_shift:window=30 cutoff=300' ? $4 : 1/0):5 with linespoints title 'dpmpp_2m + time_shift', \
     'docs/corrections_error_vs_nfe.csv' using (strcol(1) eq 'euler' && strcol(2) eq 'none' ? $4 : 1/0):5 with linespoints title 'euler', \
     'docs/corrections_error_vs_nfe.csv' using (strcol(1) eq 'euler' && strcol(2) eq 'epsilon_scaling:b=1.03' ? $4 : 1/0):5 with linespoints title 'euler + epsilon_scaling', \
     'docs/corrections_error_vs_nfe.csv' using (strcol(1) eq 'euler' && strcol(2) eq 'time_shift:window=30 cutoff=300' ? $4 : 1/0):5 with linespoints title 'euler + time_shift', \
     'docs/corrections_error_vs_nfe.csv' using (strcol(1) eq 'heun' && strcol(2) eq 'none' ? $4 : 1/0):5 with linespoints title 'heun', \
     'docs/corrections_error_vs_nfe.csv' using (strcol(1) eq 'heun' && strcol(2) eq 'epsilon_scaling:b=1.03' ? $4 : 1/0):5 with linespoints title 'heun + epsilon_scaling', \
     'docs/corrections_error_vs_nfe.csv' using (strcol(1) eq 'heun' && strcol(2) eq 'time_shift:window=30 cutoff=300' ? $4 : 1/0):5 with linespoints title 'heun + time_shift'
