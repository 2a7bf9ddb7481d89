# Writes OUT, a C++ file defining `const char* const NAME` (in namespace
# NAMESPACE) holding the text of IN: a file served by a binary (the `tess serve`
# page) lives in the repository as itself and is embedded at build time.
file(READ "${IN}" content)
string(FIND "${content}" ")TESS_EMBED\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter )TESS_EMBED\"")
endif()
file(WRITE "${OUT}.tmp" "// Generated from ${IN} by cmake/embed_text.cmake; do not edit.\nnamespace ${NAMESPACE} {\nextern const char* const ${NAME};\nconst char* const ${NAME} = R\"TESS_EMBED(${content})TESS_EMBED\";\n}  // namespace ${NAMESPACE}\n")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUT}.tmp" "${OUT}")
