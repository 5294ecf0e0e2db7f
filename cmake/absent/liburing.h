/* SPDX-License-Identifier: MIT */
/* Shadows <liburing.h> in a TP_MINIMAL_DEPS=ON build (cmake/absent/README). */
#error                                                                                             \
    "<liburing.h> is optional: a TP_MINIMAL_DEPS=ON build must not include it (guard the include with what CMakeLists.txt detects)"
