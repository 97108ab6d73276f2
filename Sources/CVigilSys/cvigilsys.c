#define _GNU_SOURCE
#include "cvigilsys.h"
#include <errno.h>
#include <sys/socket.h>
#include <string.h>

int vigil_recv_batch(int fd, uint8_t *buf, size_t slot, unsigned n, int *lens, struct sockaddr_storage *from) {
    struct mmsghdr msgs[VIGIL_RECV_BATCH_MAX];
    struct iovec iov[VIGIL_RECV_BATCH_MAX];
    if (n > VIGIL_RECV_BATCH_MAX) n = VIGIL_RECV_BATCH_MAX;
    for (unsigned i = 0; i < n; i++) {
        iov[i].iov_base = buf + (size_t)i * slot;
        iov[i].iov_len = slot;
        msgs[i].msg_hdr.msg_name = &from[i];
        msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = NULL;
        msgs[i].msg_hdr.msg_controllen = 0;
        msgs[i].msg_hdr.msg_flags = 0;
        msgs[i].msg_len = 0;
    }
    int r;
    do {
        r = recvmmsg(fd, msgs, n, MSG_DONTWAIT, NULL);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    for (int i = 0; i < r; i++) {
        // A datagram larger than its slot was cut: report it as such (the caller drops it).
        lens[i] = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? -1 : (int)msgs[i].msg_len;
    }
    return r;
}

int vigil_epoll_ctl(int epfd, int op, int fd, uint32_t events) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = 0;
    ev.data.fd = fd;
    return epoll_ctl(epfd, op, fd, &ev);
}

int vigil_epoll_wait(int epfd, int *fds, uint32_t *events, int max, int timeout) {
    struct epoll_event evs[VIGIL_EPOLL_MAX];
    if (max > VIGIL_EPOLL_MAX) max = VIGIL_EPOLL_MAX;
    int n = epoll_wait(epfd, evs, max, timeout);
    for (int i = 0; i < n; i++) {
        fds[i] = evs[i].data.fd;
        events[i] = evs[i].events;
    }
    return n;
}

int vigil_spawn_closefrom(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

ssize_t vigil_send_fd(int sock, int fd, const void *data, size_t len) {
    struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } c;
    memset(&c, 0, sizeof c);
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof c.buf };
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &fd, sizeof(int));
    return sendmsg(sock, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
}

ssize_t vigil_recv_fd(int sock, void *data, size_t len, int *fd) {
    struct iovec iov = { .iov_base = data, .iov_len = len };
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int) * 4)]; } c;
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof c.buf };
    *fd = -1;
    ssize_t n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) return n;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < count; i++) {
            int got;
            memcpy(&got, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
            // One descriptor per message: keep the first, close any other.
            if (*fd < 0) *fd = got; else close(got);
        }
    }
    return n;
}

int vigil_accept_nonblock(int fd) {
    return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
