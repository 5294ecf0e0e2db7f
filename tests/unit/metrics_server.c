/* SPDX-License-Identifier: MIT */
/*
 * HTTP endpoint: curl scrapes while threads update; address errors are exact;
 * a scrape racing shutdown gets a complete body or a 503; stop joins and
 * closes everything (no thread or fd left behind).
 * TP_TEST_TIMEOUT: 90
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

/* Not tp_test.h: it pulls in every module's header via tripool.h, and this
 * test needs (and links) only the metrics module. */
#include "internal/atomic.h"
#include "internal/os.h"
#include "tripool/metrics.h"

static bool under_sanitizer(void) {
    const char *s = getenv("TP_TEST_SANITIZER");
    return s && strcmp(s, "none") != 0;
}

/* GET path from 127.0.0.1:port with a raw socket; returns the HTTP status
 * (0 if the connection failed) and the body (malloc'd) in *body. */
static int http_get(unsigned port, const char *path, char **body) {
    *body = NULL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return 0;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return 0;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (len + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        free(buf);
        return 0;
    }
    char *hdr_end = strstr(buf, "\r\n\r\n");
    if (!hdr_end) {
        free(buf);
        return 0;
    }
    *body = strdup(hdr_end + 4);
    /* a complete response carries Content-Length bytes */
    const char *cl = strstr(buf, "Content-Length: ");
    if (cl && status == 200) {
        size_t want = strtoul(cl + 16, NULL, 10);
        if (strlen(*body) != want) status = -1;
    }
    free(buf);
    return status;
}

struct worker {
    tp_counter *c;
    tp_histogram *h;
    _Atomic int *stop;
    uint64_t done;
};

static void *work(void *arg) {
    struct worker *w = arg;
    while (!tp__load_relaxed(w->stop)) {
        tp_counter_inc(w->c);
        tp_histogram_observe(w->h, (double)(w->done % 100) / 100.0);
        w->done++;
    }
    return NULL;
}

static void test_curl_scrape_while_working(void **state) {
    int fds_before = tp__open_fd_count();
    tp_metrics *r;
    tp_counter *c;
    tp_histogram *h;
    assert_int_equal(tp_metrics_create(&r), 0);
    tp_label l = {"pool", "main"};
    assert_int_equal(tp_metrics_counter(r, "work_total", "Work done.", &l, 1, &c), 0);
    double b[4] = {0.1, 0.25, 0.5, 0.9};
    assert_int_equal(tp_metrics_histogram(r, "work_size_bytes", "Work size.", &l, 1, b, 4, &h), 0);
    tp_metrics_server *srv;
    assert_int_equal(tp_metrics_serve(r, "127.0.0.1:0", &srv), 0);
    unsigned port = tp_metrics_server_port(srv);
    assert_true(port > 0);

    _Atomic int stop = 0;
    struct worker w[2] = {{c, h, &stop, 0}, {c, h, &stop, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);

    uint64_t last = 0;
    for (int i = 0; i < 3; i++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd,
                 "curl -sf -D /tmp/tp_metrics_hdr.$$ http://127.0.0.1:%u/metrics > "
                 "/tmp/tp_metrics_body.$$ && grep -qi '^content-type: text/plain; "
                 "version=0.0.4' /tmp/tp_metrics_hdr.$$ && promtool check metrics < "
                 "/tmp/tp_metrics_body.$$ && grep '^work_total' /tmp/tp_metrics_body.$$; "
                 "rc=$?; rm -f /tmp/tp_metrics_hdr.$$ /tmp/tp_metrics_body.$$; exit $rc",
                 port);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        char line[256] = "";
        assert_non_null(fgets(line, sizeof line, p));
        assert_int_equal(pclose(p), 0);
        unsigned long long v = 0;
        assert_int_equal(sscanf(line, "work_total{pool=\"main\"} %llu", &v), 1);
        assert_true(v >= last); /* counters only grow between scrapes */
        last = v;
    }
    /* JSON and 404 */
    char *body;
    assert_int_equal(http_get(port, "/metrics.json", &body), 200);
    assert_non_null(strstr(body, "\"name\":\"work_total\""));
    free(body);
    assert_int_equal(http_get(port, "/nope", &body), 404);
    free(body);
    char cmd2[256];
    snprintf(cmd2, sizeof cmd2,
             "test \"$(curl -s -o /dev/null -w '%%{http_code}' -X POST "
             "http://127.0.0.1:%u/metrics)\" = 405",
             port);
    assert_int_equal(system(cmd2), 0);

    tp__store_relaxed(&stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_true(last > 0);
    assert_int_equal(tp_counter_value(c), w[0].done + w[1].done);
    assert_int_equal(tp_histogram_count(h), w[0].done + w[1].done);
    int threads_serving = tp__thread_count();
    tp_metrics_server_stop(srv);
    /* the one server thread is joined and its sockets are closed (counted
     * after the workers' join: TSan starts a helper thread of its own) */
    assert_int_equal(tp__thread_count(), threads_serving - 1);
    assert_int_equal(tp__open_fd_count(), fds_before);
    /* the port is free again */
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    assert_int_equal(tp_metrics_serve(r, addr, &srv), 0);
    tp_metrics_server_stop(srv);
    tp_metrics_destroy(r);
}

static void test_address_errors(void **state) {
    tp_metrics *r;
    tp_metrics_server *srv, *srv2;
    int fds_before = tp__open_fd_count();
    assert_int_equal(tp_metrics_create(&r), 0);
    const char *bad[] = {"",
                         "127.0.0.1",
                         "127.0.0.1:",
                         "127.0.0.1:99999",
                         "127.0.0.1:-1",
                         "127.0.0.1:80x",
                         "::1:9464",
                         "[::1",
                         "[::1]9464",
                         "no.such.host.invalid:1",
                         "999.1.1.1:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(tp_metrics_serve(r, bad[i], &srv), -EINVAL);
    assert_int_equal(tp_metrics_serve(NULL, "127.0.0.1:0", &srv), -EINVAL);
    assert_int_equal(tp_metrics_serve(r, NULL, &srv), -EINVAL);
    assert_int_equal(tp_metrics_serve(r, "127.0.0.1:0", NULL), -EINVAL);
    /* a documentation address (TEST-NET-1) is not ours to bind */
    assert_int_equal(tp_metrics_serve(r, "192.0.2.1:0", &srv), -EADDRNOTAVAIL);

    /* port in use */
    assert_int_equal(tp_metrics_serve(r, ":0", &srv), 0); /* empty host = loopback */
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", tp_metrics_server_port(srv));
    assert_int_equal(tp_metrics_serve(r, addr, &srv2), -EADDRINUSE);
    assert_string_equal(tp_strerror(-EADDRINUSE), "address already in use");
    tp_metrics_server_stop(srv);
    tp_metrics_server_stop(NULL);
    /* IPv6 loopback, when the machine has it */
    int err = tp_metrics_serve(r, "[::1]:0", &srv);
    assert_true(err == 0 || err == -EADDRNOTAVAIL || err == -EAFNOSUPPORT);
    if (err == 0) tp_metrics_server_stop(srv);
    assert_int_equal(tp__open_fd_count(), fds_before);
    tp_metrics_destroy(r);
}

struct scraper {
    unsigned port;
    _Atomic int *stop;
    _Atomic int ok;
    int unavailable, refused;
};

static void *scrape_loop(void *arg) {
    struct scraper *s = arg;
    while (!tp__load_relaxed(s->stop)) {
        char *body;
        int st = http_get(s->port, "/metrics", &body);
        if (st == 200) {
            /* complete: the last family's last line is there */
            assert_non_null(strstr(body, "last_total 1\n"));
            tp__add_relaxed(&s->ok, 1);
        } else if (st == 503) {
            s->unavailable++;
        } else {
            assert_int_equal(st, 0); /* refused/reset: never a partial 200 */
            s->refused++;
        }
        free(body);
    }
    return NULL;
}

static void test_scrape_during_shutdown(void **state) {
    tp_metrics *r;
    assert_int_equal(tp_metrics_create(&r), 0);
    /* a large exposition so responses take a while to send */
    char name[64];
    tp_gauge *g;
    tp_counter *c;
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof name, "gauge_%d", i);
        tp_label l = {"pool", "some longer label value to make the body big"};
        assert_int_equal(tp_metrics_gauge(r, name, "A gauge.", &l, 1, &g), 0);
        tp_gauge_set(g, i);
    }
    assert_int_equal(tp_metrics_counter(r, "last_total", "Last.", NULL, 0, &c), 0);
    tp_counter_inc(c);
    int rounds = under_sanitizer() ? 3 : 10, ok = 0;
    for (int round = 0; round < rounds; round++) {
        tp_metrics_server *srv;
        assert_int_equal(tp_metrics_serve(r, "127.0.0.1:0", &srv), 0);
        _Atomic int stop = 0;
        struct scraper s[2] = {{tp_metrics_server_port(srv), &stop, 0, 0, 0},
                               {tp_metrics_server_port(srv), &stop, 0, 0, 0}};
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_create(&t[i], NULL, scrape_loop, &s[i]), 0);
        /* stop while scrapes are in flight: after the first complete one */
        uint64_t give_up = tp__now_ns() + 30 * TP_NSEC_PER_SEC;
        while (tp__load_relaxed(&s[0].ok) + tp__load_relaxed(&s[1].ok) == 0 &&
               tp__now_ns() < give_up) {
            struct timespec ts = {0, 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        tp_metrics_server_stop(srv);
        tp__store_relaxed(&stop, 1);
        for (int i = 0; i < 2; i++) {
            pthread_join(t[i], NULL);
            ok += tp__load_relaxed(&s[i].ok);
        }
    }
    assert_true(ok >= rounds); /* each round stopped after a complete scrape */
    tp_metrics_destroy(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_curl_scrape_while_working),
        cmocka_unit_test(test_address_errors),
        cmocka_unit_test(test_scrape_during_shutdown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
