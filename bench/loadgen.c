/*
 * loadgen: a closed-loop NDJSON load generator for a Unix stream socket.
 *
 * One thread, one epoll set, N connections. Each connection keeps `depth` requests in flight:
 * an answer line frees a slot and the next request goes out at once. Requests are taken in
 * turn from a file of request lines. Latency is measured per request (send to answer) into a
 * log-linear histogram (1/64 relative precision), so percentiles cost no memory per request.
 *
 * Written for bench/bench_server.py, which compiles it with `cc -O2` into a temporary
 * directory and reads the one JSON object it prints on stdout.
 *
 *   loadgen -s SOCKET -f REQUESTS [-c CONNS] [-d DEPTH] [-D SECONDS] [-W WARMUP] [-n COUNT]
 *           [-m MARKER] [-L SLOW_MS]
 *
 * -D bounds the measured phase by time, -n by answers (whichever comes first). -m MARKER
 * records the CLOCK_MONOTONIC time of the first answer containing MARKER (reload tests compare
 * it with the time the file was written). -L counts answers slower than SLOW_MS.
 * A connection the server closes counts as an error; it is reopened.
 *
 * -H speaks HTTP/1.1 instead (keep-alive; pipelined with -d above 1): each line of REQUESTS is
 * "PATH<TAB>BODY", sent as a POST (an empty BODY: a GET); "<TAB>HEADER: VALUE" fields may follow.
 * An answer is a whole response (Content-Length framing); 200 and 304 count as ok.
 * -t PORT connects to 127.0.0.1:PORT over TCP instead of the Unix socket -s.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define SUB_BITS 6
#define SUB (1 << SUB_BITS)
#define NBUCKETS (2 * SUB + 40 * SUB)

static uint64_t hist[NBUCKETS];

static int bucket_of(uint64_t v) {
    if (v < 2 * SUB) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - SUB_BITS;
    int idx = 2 * SUB + (shift - 1) * SUB + (int)((v >> shift) - SUB);
    return idx < NBUCKETS ? idx : NBUCKETS - 1;
}

static uint64_t value_of(int idx) { /* the middle of the bucket */
    if (idx < 2 * SUB) return (uint64_t)idx;
    int shift = (idx - 2 * SUB) / SUB + 1;
    uint64_t base = (uint64_t)(SUB + (idx - 2 * SUB) % SUB) << shift;
    return base + ((1ULL << shift) >> 1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

struct line { const char *p; size_t n; };

struct conn {
    int fd;
    char *rbuf; size_t rlen, rcap;
    char *wbuf; size_t wlen, woff, wcap;
    uint64_t *sent; int head, inflight; /* ring of send times, oldest at head */
    size_t next;                         /* next request line */
    int want_out;
};

static const char *sock_path;
static int http_mode, tcp_port;
static struct line *lines;
static size_t nlines;
static int depth = 1;
static int epfd;
static int stopping;
static uint64_t measure_start, measure_end;
static uint64_t answers, errors, conn_errors, slow, slow_ns, count_limit;
static uint64_t max_ns, marker_ns;
static const char *marker;
static size_t marker_len;

static void die(const char *what) { perror(what); exit(2); }

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n);
    if (!p) die("realloc");
    return p;
}

static int open_tcp(void) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)tcp_port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static int open_conn(void) {
    if (tcp_port) return open_tcp();
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, sock_path, sizeof addr.sun_path - 1);
    for (int attempt = 0; attempt < 500; attempt++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            return fd;
        }
        close(fd);
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    die("connect");
    return -1;
}

static void watch(struct conn *c, int op) {
    struct epoll_event ev = {.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, op, c->fd, &ev) < 0) die("epoll_ctl");
}

static void enqueue(struct conn *c, uint64_t t) {
    const struct line *l = &lines[c->next];
    c->next = (c->next + 1) % nlines;
    if (c->wlen + l->n > c->wcap) {
        c->wcap = (c->wlen + l->n) * 2;
        c->wbuf = xrealloc(c->wbuf, c->wcap);
    }
    memcpy(c->wbuf + c->wlen, l->p, l->n);
    c->wlen += l->n;
    c->sent[(c->head + c->inflight) % depth] = t;
    c->inflight++;
}

static int flush(struct conn *c) {
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) break;
            if (errno == EINTR) continue;
            return -1;
        }
        c->woff += (size_t)n;
    }
    if (c->woff == c->wlen) c->woff = c->wlen = 0;
    int want = c->wlen > 0;
    if (want != c->want_out) {
        c->want_out = want;
        watch(c, EPOLL_CTL_MOD);
    }
    return 0;
}

static void refill(struct conn *c, uint64_t t) {
    while (!stopping && c->inflight < depth) enqueue(c, t);
}

static void reopen(struct conn *c) {
    conn_errors++;
    errors += (uint64_t)c->inflight;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->rlen = c->wlen = c->woff = 0;
    c->head = c->inflight = 0;
    c->want_out = 0;
    c->fd = open_conn();
    watch(c, EPOLL_CTL_ADD);
    refill(c, now_ns());
    if (flush(c) < 0) die("send after reconnect");
}

static void on_answer(struct conn *c, const char *p, size_t n, uint64_t t) {
    if (c->inflight == 0) return; /* an unsolicited line (an event): not ours to time */
    uint64_t sent = c->sent[c->head];
    c->head = (c->head + 1) % depth;
    c->inflight--;
    if (marker && !marker_ns && memmem(p, n, marker, marker_len)) marker_ns = t;
    if (sent < measure_start || t > measure_end) return;
    uint64_t lat = t - sent;
    hist[bucket_of(lat)]++;
    answers++;
    if (lat > max_ns) max_ns = lat;
    if (slow_ns && lat > slow_ns) slow++;
    if (http_mode) {
        if (n < 12 || (memcmp(p + 9, "200", 3) != 0 && memcmp(p + 9, "304", 3) != 0)) errors++;
    } else if (memmem(p, n, "\"ok\":false", 10) || !memmem(p, n, "\"ok\":true", 9)) errors++;
    if (count_limit && answers >= count_limit) stopping = 1;
}

/* The length of the whole response at p, or 0 while it is incomplete. */
static size_t http_response_length(const char *p, size_t n) {
    const char *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t head = (size_t)(end - p) + 4, body = 0;
    int no_body = n >= 12 && (memcmp(p + 9, "304", 3) == 0 || memcmp(p + 9, "204", 3) == 0);
    for (const char *q = p; !no_body && q < end; ) {
        const char *eol = memmem(q, (size_t)(end - q) + 2, "\r\n", 2);
        if (!eol) break;
        if ((size_t)(eol - q) > 15 && strncasecmp(q, "content-length:", 15) == 0) body = strtoull(q + 15, NULL, 10);
        q = eol + 2;
    }
    return head + body <= n ? head + body : 0;
}

static void on_readable(struct conn *c) {
    for (;;) {
        if (c->rcap - c->rlen < 65536) {
            c->rcap = c->rcap * 2 + 65536;
            c->rbuf = xrealloc(c->rbuf, c->rcap);
        }
        size_t room = c->rcap - c->rlen;
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, room, 0);
        if (n == 0) { reopen(c); return; }
        if (n < 0) {
            if (errno == EAGAIN) break;
            if (errno == EINTR) continue;
            reopen(c);
            return;
        }
        c->rlen += (size_t)n;
        if ((size_t)n < room) break; /* a short read: nothing more is waiting */
    }
    uint64_t t = now_ns();
    size_t start = 0;
    char *nl;
    while (http_mode) {
        size_t len = http_response_length(c->rbuf + start, c->rlen - start);
        if (!len) break;
        on_answer(c, c->rbuf + start, len, t);
        start += len;
    }
    while (!http_mode && (nl = memchr(c->rbuf + start, '\n', c->rlen - start)) != NULL) {
        size_t end = (size_t)(nl - c->rbuf);
        on_answer(c, c->rbuf + start, end - start, t);
        start = end + 1;
    }
    if (start) {
        memmove(c->rbuf, c->rbuf + start, c->rlen - start);
        c->rlen -= start;
    }
    refill(c, t);
    if (flush(c) < 0) reopen(c);
}

/* -H: turn each "PATH<TAB>BODY[<TAB>HEADER: VALUE...]" line into a whole HTTP/1.1 request. */
static void http_requests(void) {
    for (size_t i = 0; i < nlines; i++) {
        char *line = strndup(lines[i].p, lines[i].n - 1);
        char *path = strtok(line, "\t"), *body = strtok(NULL, "\t"), *field;
        if (body && strcmp(body, "-") == 0) body = NULL;
        size_t len = 0;
        char *req = xrealloc(NULL, lines[i].n * 2 + 512);
        len += (size_t)sprintf(req, "%s %s HTTP/1.1\r\nHost: localhost\r\n", body ? "POST" : "GET", path);
        while ((field = strtok(NULL, "\t")) != NULL) len += (size_t)sprintf(req + len, "%s\r\n", field);
        if (body) len += (size_t)sprintf(req + len, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                                         strlen(body), body);
        else len += (size_t)sprintf(req + len, "\r\n");
        lines[i].p = req;
        lines[i].n = len;
        free(line);
    }
}

static void load_lines(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = xrealloc(NULL, (size_t)size + 2);
    if (fread(data, 1, (size_t)size, f) != (size_t)size) die("fread");
    fclose(f);
    if (size == 0 || data[size - 1] != '\n') data[size++] = '\n';
    size_t cap = 16;
    lines = xrealloc(NULL, cap * sizeof *lines);
    for (long i = 0, s = 0; i < size; i++) {
        if (data[i] != '\n') continue;
        if (i > s) {
            if (nlines == cap) lines = xrealloc(lines, (cap *= 2) * sizeof *lines);
            lines[nlines].p = data + s;
            lines[nlines].n = (size_t)(i - s + 1);
            nlines++;
        }
        s = i + 1;
    }
    if (!nlines) { fprintf(stderr, "%s: no request lines\n", path); exit(2); }
    if (http_mode) http_requests();
}

static double cpu_seconds(struct timeval a, struct timeval b) {
    return (double)(a.tv_sec + b.tv_sec) + (double)(a.tv_usec + b.tv_usec) / 1e6;
}

int main(int argc, char **argv) {
    const char *reqfile = NULL;
    int nconns = 16;
    double duration = 5, warmup = 1, slow_ms = 0;
    int opt;
    while ((opt = getopt(argc, argv, "s:f:c:d:D:W:n:m:L:Ht:")) != -1) {
        switch (opt) {
        case 's': sock_path = optarg; break;
        case 'f': reqfile = optarg; break;
        case 'c': nconns = atoi(optarg); break;
        case 'd': depth = atoi(optarg); break;
        case 'D': duration = atof(optarg); break;
        case 'W': warmup = atof(optarg); break;
        case 'n': count_limit = strtoull(optarg, NULL, 10); break;
        case 'm': marker = optarg; marker_len = strlen(optarg); break;
        case 'L': slow_ms = atof(optarg); break;
        case 'H': http_mode = 1; break;
        case 't': tcp_port = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: %s -s SOCKET -f REQUESTS [-c N] [-d DEPTH] [-D S] [-W S] [-n N] [-m MARKER] [-L MS]\n", argv[0]);
            return 2;
        }
    }
    if ((!sock_path && !tcp_port) || !reqfile || nconns < 1 || depth < 1) {
        fprintf(stderr, "loadgen: -s and -f are required; -c and -d at least 1\n");
        return 2;
    }
    slow_ns = (uint64_t)(slow_ms * 1e6);
    load_lines(reqfile);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->fd = open_conn();
        c->sent = calloc((size_t)depth, sizeof *c->sent);
        c->next = ((size_t)i * 7919u) % nlines; /* connections start at different lines */
        watch(c, EPOLL_CTL_ADD);
    }
    uint64_t t0 = now_ns();
    measure_start = t0 + (uint64_t)(warmup * 1e9);
    measure_end = measure_start + (uint64_t)(duration * 1e9);
    for (int i = 0; i < nconns; i++) {
        refill(&conns[i], t0);
        if (flush(&conns[i]) < 0) reopen(&conns[i]);
    }

    struct epoll_event *events = calloc((size_t)nconns, sizeof *events);
    uint64_t drain_deadline = 0;
    for (;;) {
        int n = epoll_wait(epfd, events, nconns, 5);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
            else if (events[i].events & EPOLLOUT && flush(c) < 0) reopen(c);
        }
        uint64_t t = now_ns();
        if (!stopping && t >= measure_end) stopping = 1;
        if (stopping) {
            if (!drain_deadline) drain_deadline = t + 2000000000ULL;
            int busy = 0;
            for (int i = 0; i < nconns; i++) busy += conns[i].inflight;
            if (!busy || t > drain_deadline) {
                errors += (uint64_t)busy;
                break;
            }
        }
    }
    uint64_t end = now_ns();
    uint64_t stop_at = end < measure_end ? end : measure_end;
    double secs = (double)(stop_at > measure_start ? stop_at - measure_start : 1) / 1e9;

    double pct[] = {50, 90, 99, 99.9};
    double out[4] = {0};
    for (int k = 0; k < 4; k++) {
        uint64_t want = (uint64_t)((double)answers * pct[k] / 100.0 + 0.5), seen = 0;
        if (want == 0) want = 1;
        for (int i = 0; i < NBUCKETS; i++) {
            seen += hist[i];
            if (seen >= want) { out[k] = (double)value_of(i) / 1000.0; break; }
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"answers\":%llu,\"errors\":%llu,\"conn_errors\":%llu,\"seconds\":%.6f,\"rps\":%.1f,"
           "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,"
           "\"slow\":%llu,\"marker_ns\":%llu,\"start_ns\":%llu,\"cpu_s\":%.3f,\"wall_s\":%.3f}\n",
           (unsigned long long)answers, (unsigned long long)errors, (unsigned long long)conn_errors,
           secs, (double)answers / secs, out[0], out[1], out[2], out[3], (double)max_ns / 1000.0,
           (unsigned long long)slow, (unsigned long long)marker_ns, (unsigned long long)t0,
           cpu_seconds(ru.ru_utime, ru.ru_stime), (double)(end - t0) / 1e9);
    return 0;
}
