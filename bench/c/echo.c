/*
 * A single-threaded, edge-triggered epoll echo server: the practical limit for one thread.
 *
 * One shared read buffer; a connection gets a pending-write buffer only while the kernel
 * refuses bytes, and stops reading until it drains (back-pressure). A short read means the
 * socket is drained, so the next edge tells of more data (as nginx does); a full read, or a
 * read after the peer's FIN, reads on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUF (64 * 1024)
#define MAX_EVENTS 1024

struct pending {
    char *data;
    size_t len;
    size_t off;
};

/* Pending writes indexed by descriptor; NULL while nothing waits. */
static struct pending **pend;
static size_t pend_cap;

static int set_pending(int fd, const char *data, size_t len) {
    if ((size_t)fd >= pend_cap) {
        size_t cap = pend_cap ? pend_cap : 1024;
        while (cap <= (size_t)fd) cap *= 2;
        struct pending **p = realloc(pend, cap * sizeof *p);
        if (!p) return -1;
        memset(p + pend_cap, 0, (cap - pend_cap) * sizeof *p);
        pend = p;
        pend_cap = cap;
    }
    struct pending *p = malloc(sizeof *p);
    if (!p) return -1;
    p->data = malloc(len);
    if (!p->data) {
        free(p);
        return -1;
    }
    memcpy(p->data, data, len);
    p->len = len;
    p->off = 0;
    pend[fd] = p;
    return 0;
}

static struct pending *get_pending(int fd) {
    return (size_t)fd < pend_cap ? pend[fd] : NULL;
}

static void drop_conn(int fd) {
    struct pending *p = get_pending(fd);
    if (p) {
        free(p->data);
        free(p);
        pend[fd] = NULL;
    }
    close(fd);
}

/* Returns 0 when everything was written, 1 when bytes wait, -1 on error. */
static int write_all(int fd, const char *data, size_t len, size_t *written) {
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            break;
        } else {
            return -1;
        }
    }
    *written = off;
    return off < len ? 1 : 0;
}

/* Flushes pending bytes; 0 when none are left, 1 when some still wait, -1 on error. */
static int flush(int fd) {
    struct pending *p = get_pending(fd);
    if (!p) return 0;
    size_t w;
    int r = write_all(fd, p->data + p->off, p->len - p->off, &w);
    if (r < 0) return -1;
    p->off += w;
    if (p->off == p->len) {
        free(p->data);
        free(p);
        pend[fd] = NULL;
        return 0;
    }
    return 1;
}

/* Reads and echoes until the socket is drained or the peer stops taking bytes. */
static int serve_read(int fd, char *buf, int rdhup) {
    for (;;) {
        ssize_t n = read(fd, buf, READ_BUF);
        if (n > 0) {
            size_t w;
            int r = write_all(fd, buf, (size_t)n, &w);
            if (r < 0) return -1;
            if (r == 1) return set_pending(fd, buf + w, (size_t)n - w);
            if ((size_t)n < READ_BUF && !rdhup) return 0;
        } else if (n == 0) {
            return -1;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN) {
            return 0;
        } else {
            return -1;
        }
    }
}

/* Serves the (non-blocking, listening) socket forever; returns -1 on a fatal error. */
int torsion_bench_c_echo(int listen_fd, int nodelay) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return -1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = listen_fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev) < 0) return -1;
    char *buf = malloc(READ_BUF);
    struct epoll_event *events = malloc(MAX_EVENTS * sizeof *events);
    if (!buf || !events) return -1;
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            uint32_t e = events[i].events;
            if (fd == listen_fd) {
                for (;;) {
                    int c = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0) {
                        if (errno == EINTR || errno == ECONNABORTED) continue;
                        break; /* EAGAIN, or out of descriptors: wait for the next edge */
                    }
                    if (nodelay) {
                        int one = 1;
                        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    }
                    struct epoll_event cev = {
                        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.fd = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) < 0) close(c);
                }
                continue;
            }
            if (e & (EPOLLERR | EPOLLHUP)) {
                drop_conn(fd);
                continue;
            }
            int rdhup = (e & EPOLLRDHUP) != 0;
            if (get_pending(fd)) {
                if (!(e & EPOLLOUT)) continue;
                int r = flush(fd);
                /* Drained: read to EAGAIN what arrived while reading was held back (an
                 * edge, FIN included, may have come and gone meanwhile). */
                if (r < 0 || (r == 0 && serve_read(fd, buf, 1) < 0)) drop_conn(fd);
            } else if (e & (EPOLLIN | EPOLLRDHUP)) {
                if (serve_read(fd, buf, rdhup) < 0) drop_conn(fd);
            }
        }
    }
}
