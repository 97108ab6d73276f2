#ifndef CVIGILSYS_H
#define CVIGILSYS_H
// Linux headers that Swift's Glibc module does not surface.
#include <unistd.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/signalfd.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_addr.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/epoll.h>

static inline int vigil_ioctl_ifreq(int fd, unsigned long req, struct ifreq *ifr) { return ioctl(fd, req, ifr); }
static inline unsigned long vigil_SIOCGIFFLAGS(void) { return SIOCGIFFLAGS; }
static inline unsigned long vigil_SIOCGIFHWADDR(void) { return SIOCGIFHWADDR; }
static inline int vigil_if_indextoname(unsigned int idx, char *buf) { return if_indextoname(idx, buf) != 0; }
// pipe2 is only declared under _GNU_SOURCE, which would make these headers differ from the
// Glibc module's; declare it here instead.
extern int pipe2(int __pipedes[2], int __flags);
static inline int vigil_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }
/// accept4(2) with SOCK_NONBLOCK and SOCK_CLOEXEC (declared only under _GNU_SOURCE).
int vigil_accept_nonblock(int fd);
// memfd_create likewise (_GNU_SOURCE).
extern int memfd_create(const char *__name, unsigned int __flags);
static inline int vigil_memfd(const char *name) { return memfd_create(name, 1U /* MFD_CLOEXEC */); }
// One 64-bit word shared between clusterd and its guardian.
static inline void vigil_store_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t vigil_load_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
// Up to `n` (at most VIGIL_RECV_BATCH_MAX) waiting datagrams in one recvmmsg(2) call, without
// blocking: datagram i lands at buf + i * slot, its length in lens[i] (-1: larger than a slot,
// cut) and its source in from[i]. Returns how many were read: fewer than `n` means none is left
// waiting, so no further call is needed to find the queue empty. -1 and errno on an error.
#define VIGIL_RECV_BATCH_MAX 64
int vigil_recv_batch(int fd, uint8_t *buf, size_t slot, unsigned n, int *lens, struct sockaddr_storage *from);
// epoll(7) without the packed `struct epoll_event` crossing into Swift: a descriptor's events
// are poll(2)'s bits (POLLIN, POLLOUT, POLLERR, POLLHUP have the same values as EPOLLIN...).
#define VIGIL_EPOLL_MAX 64
int vigil_epoll_ctl(int epfd, int op, int fd, uint32_t events);
int vigil_epoll_wait(int epfd, int *fds, uint32_t *events, int max, int timeout);
// Watchdog ioctls (linux/watchdog.h): the timeout in whole seconds, set and read back; a pet.
#include <linux/watchdog.h>
#include <sys/ioctl.h>
static inline int vigil_wd_settimeout(int fd, int seconds) { int s = seconds; return ioctl(fd, WDIOC_SETTIMEOUT, &s) == 0 ? s : -1; }
static inline int vigil_wd_gettimeout(int fd) { int s = 0; return ioctl(fd, WDIOC_GETTIMEOUT, &s) == 0 ? s : -1; }
static inline int vigil_wd_keepalive(int fd) { int d = 0; return ioctl(fd, WDIOC_KEEPALIVE, &d); }
// posix_spawn_file_actions_addclosefrom_np (glibc 2.34+, _GNU_SOURCE): children get no
// descriptor above `from` - 1, close-on-exec or not.
#include <spawn.h>
int vigil_spawn_closefrom(posix_spawn_file_actions_t *actions, int from);
#endif

// Sends `fd` over a unix socket with `len` bytes of `data` (SCM_RIGHTS; never blocks, no SIGPIPE).
ssize_t vigil_send_fd(int sock, int fd, const void *data, size_t len);
// Receives one message; `*fd` is the descriptor it carried (close-on-exec) or -1.
ssize_t vigil_recv_fd(int sock, void *data, size_t len, int *fd);
