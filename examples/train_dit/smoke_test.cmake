# ctest -P script: the train_dit program end to end on 256 Fashion-MNIST images: a masked run,
# its resume (--resume), and an unmasking phase started from its weights (--init-from).
# -DBIN=<program> -DDIR=<scratch directory>
file(REMOVE_RECURSE "${DIR}")
set(common --preset tiny --patch 4 --limit 256 --batch-size 16 --minutes 0 --threads 1 --no-progress
           --sample-every 0 --sample-steps 2 --checkpoint-every 2 --log-every 2)
function(run)
  execute_process(COMMAND "${BIN}" ${common} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${BIN} ${ARGN} failed (${rc}):\n${out}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run(--objective maskdit:mask_ratio=0.5 --steps 4 --out "${DIR}/masked")
# A second run into the same directory without --resume must refuse (exit code 2), not overwrite.
execute_process(COMMAND "${BIN}" ${common} --objective maskdit:mask_ratio=0.5 --steps 4 --out "${DIR}/masked"
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
if(NOT rc EQUAL 2)
  message(FATAL_ERROR "re-running into a directory with checkpoints returned ${rc}, expected 2")
endif()
run(--objective maskdit:mask_ratio=0.5 --steps 6 --resume --out "${DIR}/masked")
if(NOT last_output MATCHES "resumed from [^\n]*ckpt_00000004.pt at step 4")
  message(FATAL_ERROR "--resume did not continue from step 4:\n${last_output}")
endif()
run(--objective maskdit:mask_ratio=0 --steps 2 --lr 1e-4 --init-from "${DIR}/masked/checkpoints/ckpt_00000006.pt"
    --out "${DIR}/unmask")
foreach(f masked/loss.csv masked/loss.png masked/samples_final.png masked/ema.pt unmask/checkpoints/ckpt_00000002.pt)
  if(NOT EXISTS "${DIR}/${f}")
    message(FATAL_ERROR "missing output ${DIR}/${f}")
  endif()
endforeach()
