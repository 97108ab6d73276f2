#define _GNU_SOURCE
#include "cvigilsys.h"
#include <errno.h>
#include <sys/socket.h>

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
