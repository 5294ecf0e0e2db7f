/* SPDX-License-Identifier: MIT */
/* tp_strerror: one error convention (0 or -errno) for every module. */
#include <string.h>

#include "tripool/common.h"

TP_API const char *tp_strerror(int err) {
    switch (err) {
    case 0:
        return "success";
    case -EINVAL:
        return "invalid argument";
    case -ENOMEM:
        return "out of memory";
    case -EAGAIN:
        return "resource temporarily unavailable (pool full or would block)";
    case -ETIMEDOUT:
        return "timed out";
    case -ECANCELED:
        return "canceled";
    case -ESHUTDOWN:
        return "pool is closed";
    case -EMFILE:
        return "too many open files";
    case -ENFILE:
        return "too many open files in system";
    case -EBUSY:
        return "resource busy";
    case -ENOENT:
        return "no such file or directory";
    case -EACCES:
        return "permission denied";
    case -EISDIR:
        return "is a directory";
    case -ENAMETOOLONG:
        return "file name too long";
    case -ESPIPE:
        return "illegal seek (handle is sequential)";
    case -ENOSPC:
        return "no space left on device";
    case -EIO:
        return "input/output error";
    case -EBADMSG:
        return "corrupt or unrecognised data";
    case -EADDRINUSE:
        return "address already in use";
    case -EPERM:
        return "operation not permitted";
    case -EDEADLK:
        return "would deadlock";
    case -ECHILD:
        return "task failed";
    case -EPROTO:
        return "protocol error";
    default:
        break;
    }
    if (err < 0 && err > -4096) {
        /* strerrordesc_np is thread-safe and returns static text (glibc >= 2.32). */
        const char *s = strerrordesc_np(-err);
        if (s) return s;
    }
    return "unknown error";
}
