# ctest -P script: README.md must contain examples/minimal_sample/main.cpp verbatim (the example CI
# builds is the one users read).
file(READ "${README}" readme)
file(READ "${EXAMPLE}" example)
string(FIND "${readme}" "${example}" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "README.md does not contain ${EXAMPLE} verbatim; copy the file into the README's C++ block")
endif()
