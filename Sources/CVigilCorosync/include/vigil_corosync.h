#ifndef VIGIL_COROSYNC_H
#define VIGIL_COROSYNC_H
// A small C layer over Corosync's client libraries (cpg, votequorum, cmap, cfg) for Swift.
// Corosync reports through C callbacks during *_dispatch; this layer turns each callback into
// an event on a queue that Swift takes after dispatching, so no Swift closure is ever called
// from C and no context pointer crosses the boundary. Every function returns a cs_error_t
// value (1 = CS_OK) unless noted. Nothing here blocks beyond Corosync's own IPC calls.
#include <stddef.h>
#include <stdint.h>

typedef struct vigil_cs vigil_cs;

enum {
    VIGIL_CS_EV_MEMBERS = 1,   // CPG group membership: nodes = members; joined/left counts after
    VIGIL_CS_EV_MESSAGE = 2,   // a message delivered to the group: from, pid, data
    VIGIL_CS_EV_QUORUM = 3,    // votequorum: quorate, nodes = members of the quorum
    VIGIL_CS_EV_TOTEM = 4,     // totem ring change: nodes = ring members, ring = ring id
};

#define VIGIL_CS_MAX_NODES 64

typedef struct {
    int kind;
    uint32_t from_node;
    uint32_t from_pid;
    uint32_t quorate;
    uint64_t ring;
    uint32_t count;
    uint32_t nodes[VIGIL_CS_MAX_NODES];
    uint32_t pids[VIGIL_CS_MAX_NODES];
    uint32_t left_count;
    uint32_t left_nodes[VIGIL_CS_MAX_NODES];
    uint32_t left_reasons[VIGIL_CS_MAX_NODES];
    uint32_t joined_count;
    uint32_t joined_nodes[VIGIL_CS_MAX_NODES];
    size_t length;            // of the message (MESSAGE)
} vigil_cs_event;

// Connects to the local Corosync: joins CPG group `group`, tracks votequorum, opens cmap and cfg.
int vigil_cs_open(const char *group, vigil_cs **out);
void vigil_cs_close(vigil_cs *cs);
int vigil_cs_cpg_fd(vigil_cs *cs, int *fd);
int vigil_cs_quorum_fd(vigil_cs *cs, int *fd);
// Dispatches what is ready on the CPG or votequorum descriptor (CS_DISPATCH_ALL).
int vigil_cs_dispatch_cpg(vigil_cs *cs);
int vigil_cs_dispatch_quorum(vigil_cs *cs);
// Takes the oldest queued event: returns 1 and fills `ev` (and up to `cap` bytes of a
// message's data into `data`; ev->length is its full length), or 0 if none.
int vigil_cs_next_event(vigil_cs *cs, vigil_cs_event *ev, uint8_t *data, size_t cap);
// Sends to the group (agreed order). CS_ERR_TRY_AGAIN (6) means: queue it and retry later.
int vigil_cs_mcast(vigil_cs *cs, const void *data, size_t len);
int vigil_cs_local_nodeid(vigil_cs *cs, uint32_t *nodeid);
// votequorum_getinfo of the local node.
int vigil_cs_quorum_info(vigil_cs *cs, uint32_t *quorate, uint32_t *expected, uint32_t *total, uint32_t *quorum);
// cmap: name of node `nodeid` from nodelist.node.N (nodeid, name or ring0_addr).
int vigil_cs_node_name(vigil_cs *cs, uint32_t nodeid, char *buf, size_t cap);
// cmap: an unsigned value (e.g. runtime.config.totem.token).
int vigil_cs_cmap_u32(vigil_cs *cs, const char *key, uint32_t *value);
// cmap: any integer value (of whatever width corosync stored it), as a signed 64-bit number.
int vigil_cs_cmap_int(vigil_cs *cs, const char *key, int64_t *value);
// cmap: a string value, copied into buf (truncated to cap - 1 bytes).
int vigil_cs_cmap_string(vigil_cs *cs, const char *key, char *buf, size_t cap);
// cmap: the cluster name (totem.cluster_name).
int vigil_cs_cluster_name(vigil_cs *cs, char *buf, size_t cap);
// cfg: knet link status towards `nodeid`: reachable, and per link configured/connected
// (up to `max` links; *links is the number reported).
int vigil_cs_node_links(vigil_cs *cs, uint32_t nodeid, uint8_t *reachable, uint8_t *enabled, uint8_t *connected, int max, int *links);
// Corosync's text for an error code.
const char *vigil_cs_strerror(int e);
#endif
