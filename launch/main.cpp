#include "launch/cli.h"

int main(int argc, char** argv) { return tess::cli::run(argc, argv); }
