// Translation unit that carries the precompiled torch header (see TessTargets.cmake).
