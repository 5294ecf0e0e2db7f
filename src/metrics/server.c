/* SPDX-License-Identifier: MIT */
/*
 * The HTTP endpoint: /metrics (Prometheus text) and /metrics.json.
 *
 * DESIGN
 * We create, bind and listen on the socket ourselves, so address and port
 * errors come back as exact errno values (-EADDRINUSE, -EADDRNOTAVAIL,
 * -EACCES), then hand it to libmicrohttpd (MHD_OPTION_LISTEN_SOCKET), which
 * runs one internal polling thread and owns the socket from then on.
 *
 * Each request renders the whole registry into a fresh malloc'd buffer
 * (tp_metrics_render_*, which takes the registry lock) and gives it to MHD to
 * send and free, so a response is complete or not sent at all.
 *
 * Shutdown: stop sets `stopping` (relaxed: it is only a hint that turns new
 * requests into 503; correctness comes from MHD_stop_daemon), then
 * MHD_stop_daemon closes the listening socket, finishes or drops open
 * connections and joins the thread. After it returns no handler runs, so
 * the server may be freed and the registry destroyed.
 *
 * Shared fields: s->reg, s->daemon, s->port are immutable after start;
 * s->stopping is atomic.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal/atomic.h"
#include "internal/probes.h"
#include "tripool/metrics.h"

struct tp_metrics_server {
    tp_metrics *reg;
    struct MHD_Daemon *daemon;
    unsigned port;
    _Atomic int stopping;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *ctype,
                             char *body, size_t len, bool owned) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        if (owned) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(conn, code, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls) {
    struct tp_metrics_server *s = cls;
    static char not_found[] = "not found: try /metrics or /metrics.json\n";
    static char bad_method[] = "method not allowed\n";
    static char unavailable[] = "shutting down\n";
    static char failed[] = "could not render metrics\n";
    const char *text = "text/plain; charset=utf-8";

    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, text, bad_method, strlen(bad_method),
                     false);
    if (tp__load_relaxed(&s->stopping))
        return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, text, unavailable, strlen(unavailable),
                     false);
    bool json;
    if (strcmp(url, "/metrics") == 0 || strcmp(url, "/") == 0)
        json = false;
    else if (strcmp(url, "/metrics.json") == 0)
        json = true;
    else
        return reply(conn, MHD_HTTP_NOT_FOUND, text, not_found, strlen(not_found), false);

    char *body;
    size_t len;
    int err = json ? tp_metrics_render_json(s->reg, &body, &len)
                   : tp_metrics_render_text(s->reg, &body, &len);
    TP_PROBE(metrics_scrape, (int)json, err ? -1L : (long)len);
    if (err)
        return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, text, failed, strlen(failed), false);
    return reply(conn, MHD_HTTP_OK, json ? "application/json" : TP_METRICS_TEXT_CONTENT_TYPE, body,
                 len, true);
}

/* Split "HOST:PORT" / "[V6]:PORT" / ":PORT" into host and port strings. */
static int split_addr(const char *addr, char *host, size_t hcap, char *port, size_t pcap) {
    const char *colon;
    size_t hlen;
    const char *h = addr;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':') return -EINVAL;
        h = addr + 1;
        hlen = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || memchr(addr, ':', (size_t)(colon - addr)))
            return -EINVAL; /* no port, or a bare IPv6 address without [] */
        hlen = (size_t)(colon - addr);
    }
    if (hlen >= hcap) return -EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    if (hlen == 0) snprintf(host, hcap, "127.0.0.1");
    const char *p = colon + 1;
    size_t plen = strlen(p);
    if (plen == 0 || plen >= pcap || plen > 5 || strspn(p, "0123456789") != plen) return -EINVAL;
    if (strtoul(p, NULL, 10) > 65535) return -EINVAL;
    memcpy(port, p, plen + 1);
    return 0;
}

/* A bound, listening socket for addr, and its port. */
static int listen_on(const char *addr, int *fd_out, unsigned *port_out, bool *v6) {
    char host[256], port[8];
    int err = split_addr(addr, host, sizeof host, port, sizeof port);
    if (err) return err;
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai) return -EINVAL;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = -errno;
        goto err_free_ai;
    }
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        err = -errno;
        goto err_close;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        err = -errno;
        goto err_close;
    }
    *v6 = ss.ss_family == AF_INET6;
    *port_out = ntohs(*v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                          : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    freeaddrinfo(ai);
    return 0;

err_close:
    close(fd);
err_free_ai:
    freeaddrinfo(ai);
    return err;
}

TP_API int tp_metrics_serve(tp_metrics *r, const char *addr, tp_metrics_server **out) {
    if (!r || !addr || !out) return -EINVAL;
    struct tp_metrics_server *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->reg = r;
    int fd;
    bool v6;
    int err = listen_on(addr, &fd, &s->port, &v6);
    if (err) goto err_free_server;
    s->daemon = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | (v6 ? MHD_USE_IPv6 : 0), 0, NULL,
                                 NULL, handle, s, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
                                 MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_CONNECTION_LIMIT,
                                 64u, MHD_OPTION_END);
    if (!s->daemon) {
        close(fd);
        err = -EIO;
        goto err_free_server;
    }
    *out = s;
    return 0;

err_free_server:
    free(s);
    return err;
}

TP_API unsigned tp_metrics_server_port(const tp_metrics_server *s) {
    return s ? s->port : 0;
}

TP_API void tp_metrics_server_stop(tp_metrics_server *s) {
    if (!s) return;
    tp__store_relaxed(&s->stopping, 1);
    MHD_stop_daemon(s->daemon); /* closes the socket, joins the thread */
    free(s);
}
