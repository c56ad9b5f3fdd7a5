# Generated files of the module folders. A glob is what makes "adding a sampler touches one file
# (plus its header and test)" true:
#   - all_samplers.h, all_schedules.h, all_objectives.h, all_training.h: umbrella headers of
#     include/diffuse/<module>/ (public headers only; detail/ folders are left out);
#   - detail/module_list.h: (folder, stem) of every registered module source, for registry_test;
#   - builtin_modules.cpp: references one anchor function per registered module source, so that a
#     static link of libdiffuse keeps every built-in registration (see <diffuse/registry.h>).
# Everything is written into ${gen_dir} (the build tree), never into the source tree.

# The anchor name of a module source: "samplers/corrections/time_shift.cpp" -> module_samplers_corrections_time_shift.
function(diffuse_module_anchor out rel)
  string(REGEX REPLACE "\\.cpp$" "" id "${rel}")
  string(REGEX REPLACE "[^A-Za-z0-9]" "_" id "${id}")
  set(${out} "module_${id}" PARENT_SCOPE)
endfunction()

function(diffuse_generate_umbrellas src_dir gen_dir)
  set(inc "${src_dir}/include/diffuse")
  foreach(group samplers schedules training/objectives)
    file(GLOB_RECURSE headers CONFIGURE_DEPENDS RELATIVE "${inc}/${group}" "${inc}/${group}/*.h")
    list(SORT headers)
    set(lines "")
    foreach(h IN LISTS headers)
      if(NOT h MATCHES "(^|/)detail/")
        string(APPEND lines "#include <diffuse/${group}/${h}>\n")
      endif()
    endforeach()
    set(DIFFUSE_UMBRELLA_INCLUDES "${lines}")
    set(DIFFUSE_UMBRELLA_NAME "include/diffuse/${group}")
    get_filename_component(leaf "${group}" NAME)
    configure_file("${src_dir}/cmake/umbrella.h.in" "${gen_dir}/diffuse/all_${leaf}.h" @ONLY)
  endforeach()
  # all_training.h: the training engine's top-level headers. distributed.h needs c10d + the gloo
  # headers (libgloo-dev): included explicitly, not by the umbrella.
  file(GLOB headers CONFIGURE_DEPENDS RELATIVE "${inc}/training" "${inc}/training/*.h")
  list(REMOVE_ITEM headers "distributed.h")
  list(SORT headers)
  set(lines "")
  foreach(h IN LISTS headers)
    string(APPEND lines "#include <diffuse/training/${h}>\n")
  endforeach()
  set(DIFFUSE_UMBRELLA_INCLUDES "${lines}")
  set(DIFFUSE_UMBRELLA_NAME "include/diffuse/training")
  configure_file("${src_dir}/cmake/umbrella.h.in" "${gen_dir}/diffuse/all_training.h" @ONLY)
endfunction()

# Module sources of libdiffuse: every .cpp of samplers/, schedules/ and training/objectives/.
# Those that register something (DIFFUSE_REGISTER...) get -DDIFFUSE_MODULE_ANCHOR=<anchor>, which
# makes <diffuse/registry.h> define the anchor function in that file; builtin_modules.cpp calls them all.
function(diffuse_module_sources src_dir gen_dir out_sources)
  set(sources "")
  set(stems "")
  set(decls "")
  set(calls "")
  foreach(group samplers schedules training/objectives)
    file(GLOB_RECURSE files CONFIGURE_DEPENDS RELATIVE "${src_dir}" "${src_dir}/${group}/*.cpp")
    list(SORT files)
    foreach(rel IN LISTS files)
      list(APPEND sources "${src_dir}/${rel}")
      file(STRINGS "${src_dir}/${rel}" registers REGEX "^[ \t]*DIFFUSE_REGISTER")
      if(registers)
        diffuse_module_anchor(anchor "${rel}")
        set_source_files_properties("${src_dir}/${rel}" PROPERTIES COMPILE_DEFINITIONS "DIFFUSE_MODULE_ANCHOR=${anchor}")
        string(APPEND decls "void ${anchor}();\n")
        string(APPEND calls "  ${anchor}();\n")
        get_filename_component(stem "${rel}" NAME_WE)
        get_filename_component(folder "${rel}" DIRECTORY)
        if(NOT folder MATCHES "(^|/)detail$")
          string(APPEND stems "    {\"${folder}\", \"${stem}\"},\n")
        endif()
      endif()
    endforeach()
  endforeach()
  set(DIFFUSE_MODULE_STEMS "${stems}")
  configure_file("${src_dir}/cmake/module_list.h.in" "${gen_dir}/diffuse/detail/module_list.h" @ONLY)
  set(DIFFUSE_MODULE_DECLS "${decls}")
  set(DIFFUSE_MODULE_CALLS "${calls}")
  configure_file("${src_dir}/cmake/builtin_modules.cpp.in" "${gen_dir}/builtin_modules.cpp" @ONLY)
  list(APPEND sources "${gen_dir}/builtin_modules.cpp")
  set(${out_sources} "${sources}" PARENT_SCOPE)
endfunction()
