# discover.cmake: run after a unit-test program links (cmake -P, from nw_unit_test in
# tests/CMakeLists.txt). Asks the program for its cases (--list) and writes OUT, which
# CTest includes: one test per case, unit.PROGRAM.CASE, running `PROGRAM CASE` in its
# own process, with the properties the including file set (NW_UNIT_ENV, NW_UNIT_DIR,
# NW_UNIT_TIMEOUT).
execute_process(COMMAND "${TEST_BIN}" --list
                OUTPUT_VARIABLE listed ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${TEST_BIN} --list failed (${rc}): ${err}")
endif()
string(REGEX REPLACE "\n$" "" listed "${listed}")
if(listed STREQUAL "")
  message(FATAL_ERROR "${TEST_BIN} --list names no case")
endif()
string(REPLACE "\n" ";" names "${listed}")
set(body "# Written by tests/unit/discover.cmake from `${PROGRAM} --list`.\n")
foreach(case IN LISTS names)
  if(NOT case MATCHES "^[A-Za-z0-9_]+$")
    message(FATAL_ERROR "${TEST_BIN} --list: bad case name '${case}'")
  endif()
  string(APPEND body
    "add_test([=[unit.${PROGRAM}.${case}]=] [=[${TEST_BIN}]=] [=[${case}]=])\n"
    "set_tests_properties([=[unit.${PROGRAM}.${case}]=] PROPERTIES LABELS unit"
    " ENVIRONMENT \"\${NW_UNIT_ENV}\" WORKING_DIRECTORY \"\${NW_UNIT_DIR}\""
    " TIMEOUT \${NW_UNIT_TIMEOUT} SKIP_RETURN_CODE 77)\n")
endforeach()
# Only a changed list rewrites the file, so CTest's view changes only when cases do.
set(old "")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL body)
  file(WRITE "${OUT}" "${body}")
endif()
