# SPDX-License-Identifier: MIT
# metrics: a leaf module (uses only internal) plus libmicrohttpd for the endpoint.
pkg_check_modules(MHD REQUIRED IMPORTED_TARGET libmicrohttpd)
set(TP_DEPS_metrics "")
set(TP_LIBS_metrics PkgConfig::MHD m)
list(APPEND TP_PC_REQUIRES libmicrohttpd)
