#include "vigil_corosync.h"
#include <corosync/corotypes.h>
#include <corosync/cpg.h>
#include <corosync/votequorum.h>
#include <corosync/cmap.h>
#include <corosync/cfg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

typedef struct item {
    struct item *next;
    vigil_cs_event ev;
    uint8_t *data;
} item;

struct vigil_cs {
    cpg_handle_t cpg;
    votequorum_handle_t vq;
    cmap_handle_t cmap;
    corosync_cfg_handle_t cfg;
    int have_cpg, have_vq, have_cmap, have_cfg;
    struct cpg_name group;
    item *head, *tail;
    size_t queued;
};

// The queue holds what one dispatch delivered: Swift takes every event right after each
// dispatch, so it never grows beyond one dispatch's worth. Only a failed allocation drops an
// event (a message then counts as lost on the wire; a quorum notice is missed until the next).
static item *push(vigil_cs *cs, int kind) {
    item *it = calloc(1, sizeof *it);
    if (!it) return NULL;
    it->ev.kind = kind;
    if (cs->tail) cs->tail->next = it; else cs->head = it;
    cs->tail = it;
    cs->queued++;
    return it;
}

static void deliver_cb(cpg_handle_t h, const struct cpg_name *g, uint32_t nodeid, uint32_t pid, void *msg, size_t len) {
    (void)g;
    void *ctx = NULL;
    if (cpg_context_get(h, &ctx) != CS_OK || !ctx) return;
    vigil_cs *cs = ctx;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) return;
    memcpy(copy, msg, len);
    item *it = push(cs, VIGIL_CS_EV_MESSAGE);
    if (!it) { free(copy); return; }
    it->ev.from_node = nodeid;
    it->ev.from_pid = pid;
    it->ev.length = len;
    it->data = copy;
}

static void confchg_cb(cpg_handle_t h, const struct cpg_name *g,
                       const struct cpg_address *members, size_t nm,
                       const struct cpg_address *left, size_t nl,
                       const struct cpg_address *joined, size_t nj) {
    (void)g;
    void *ctx = NULL;
    if (cpg_context_get(h, &ctx) != CS_OK || !ctx) return;
    item *it = push(ctx, VIGIL_CS_EV_MEMBERS);
    if (!it) return;
    for (size_t i = 0; i < nm && i < VIGIL_CS_MAX_NODES; i++) {
        it->ev.nodes[i] = members[i].nodeid;
        it->ev.pids[i] = members[i].pid;
    }
    it->ev.count = (uint32_t)(nm < VIGIL_CS_MAX_NODES ? nm : VIGIL_CS_MAX_NODES);
    for (size_t i = 0; i < nl && i < VIGIL_CS_MAX_NODES; i++) {
        it->ev.left_nodes[i] = left[i].nodeid;
        it->ev.left_reasons[i] = left[i].reason;
    }
    it->ev.left_count = (uint32_t)(nl < VIGIL_CS_MAX_NODES ? nl : VIGIL_CS_MAX_NODES);
    for (size_t i = 0; i < nj && i < VIGIL_CS_MAX_NODES; i++) it->ev.joined_nodes[i] = joined[i].nodeid;
    it->ev.joined_count = (uint32_t)(nj < VIGIL_CS_MAX_NODES ? nj : VIGIL_CS_MAX_NODES);
}

static void totem_cb(cpg_handle_t h, struct cpg_ring_id ring, uint32_t n, const uint32_t *list) {
    void *ctx = NULL;
    if (cpg_context_get(h, &ctx) != CS_OK || !ctx) return;
    item *it = push(ctx, VIGIL_CS_EV_TOTEM);
    if (!it) return;
    it->ev.ring = ring.seq;
    it->ev.from_node = ring.nodeid;
    for (uint32_t i = 0; i < n && i < VIGIL_CS_MAX_NODES; i++) it->ev.nodes[i] = list[i];
    it->ev.count = n < VIGIL_CS_MAX_NODES ? n : VIGIL_CS_MAX_NODES;
}

static void quorum_cb(votequorum_handle_t h, uint64_t context, uint32_t quorate, uint32_t n, votequorum_node_t nodes[]) {
    (void)h;
    vigil_cs *cs = (vigil_cs *)(uintptr_t)context;
    if (!cs) return;
    item *it = push(cs, VIGIL_CS_EV_QUORUM);
    if (!it) return;
    it->ev.quorate = quorate;
    uint32_t k = 0;
    for (uint32_t i = 0; i < n && k < VIGIL_CS_MAX_NODES; i++) {
        if (nodes[i].state == VOTEQUORUM_NODESTATE_MEMBER) it->ev.nodes[k++] = nodes[i].nodeid;
    }
    it->ev.count = k;
}

void vigil_cs_close(vigil_cs *cs) {
    if (!cs) return;
    if (cs->have_cpg) { cpg_leave(cs->cpg, &cs->group); cpg_finalize(cs->cpg); }
    if (cs->have_vq) { votequorum_trackstop(cs->vq); votequorum_finalize(cs->vq); }
    if (cs->have_cmap) cmap_finalize(cs->cmap);
    if (cs->have_cfg) corosync_cfg_finalize(cs->cfg);
    while (cs->head) {
        item *it = cs->head;
        cs->head = it->next;
        free(it->data);
        free(it);
    }
    free(cs);
}

int vigil_cs_open(const char *group, vigil_cs **out) {
    *out = NULL;
    size_t glen = strlen(group);
    if (glen == 0 || glen >= CPG_MAX_NAME_LENGTH) return CS_ERR_INVALID_PARAM;
    vigil_cs *cs = calloc(1, sizeof *cs);
    if (!cs) return CS_ERR_NO_MEMORY;
    memcpy(cs->group.value, group, glen);
    cs->group.length = (uint32_t)glen;
    cpg_model_v1_data_t model = {
        .model = CPG_MODEL_V1,
        .cpg_deliver_fn = deliver_cb,
        .cpg_confchg_fn = confchg_cb,
        .cpg_totem_confchg_fn = totem_cb,
        .flags = CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF,
    };
    cs_error_t e = cpg_model_initialize(&cs->cpg, CPG_MODEL_V1, (cpg_model_data_t *)&model, cs);
    if (e != CS_OK) { vigil_cs_close(cs); return e; }
    cs->have_cpg = 1;
    e = cpg_context_set(cs->cpg, cs);
    if (e != CS_OK) { vigil_cs_close(cs); return e; }
    votequorum_callbacks_t vcb = { .votequorum_quorum_notify_fn = quorum_cb };
    e = votequorum_initialize(&cs->vq, &vcb);
    if (e != CS_OK) { vigil_cs_close(cs); return e; }
    cs->have_vq = 1;
    e = votequorum_trackstart(cs->vq, (uint64_t)(uintptr_t)cs, CS_TRACK_CURRENT | CS_TRACK_CHANGES);
    if (e != CS_OK) { vigil_cs_close(cs); return e; }
    e = cmap_initialize(&cs->cmap);
    if (e != CS_OK) { vigil_cs_close(cs); return e; }
    cs->have_cmap = 1;
    corosync_cfg_callbacks_t ccb = { .corosync_cfg_shutdown_callback = NULL };
    e = corosync_cfg_initialize(&cs->cfg, &ccb);
    if (e != CS_OK) { vigil_cs_close(cs); return e; }
    cs->have_cfg = 1;
    // Joined last: from here on the group's members see us. While Corosync forms its ring it
    // answers TRY_AGAIN: a few spaced tries (never a tight loop), then the caller retries later.
    for (int tries = 0; tries < 20; tries++) {
        e = cpg_join(cs->cpg, &cs->group);
        if (e != CS_ERR_TRY_AGAIN) break;
        struct timespec pause = { .tv_sec = 0, .tv_nsec = 25 * 1000 * 1000 };
        nanosleep(&pause, NULL);
    }
    if (e != CS_OK) { vigil_cs_close(cs); return e; }
    *out = cs;
    return CS_OK;
}

int vigil_cs_cpg_fd(vigil_cs *cs, int *fd) { return cpg_fd_get(cs->cpg, fd); }
int vigil_cs_quorum_fd(vigil_cs *cs, int *fd) { return votequorum_fd_get(cs->vq, fd); }
int vigil_cs_dispatch_cpg(vigil_cs *cs) { return cpg_dispatch(cs->cpg, CS_DISPATCH_ALL); }
int vigil_cs_dispatch_quorum(vigil_cs *cs) { return votequorum_dispatch(cs->vq, CS_DISPATCH_ALL); }

int vigil_cs_next_event(vigil_cs *cs, vigil_cs_event *ev, uint8_t *data, size_t cap) {
    item *it = cs->head;
    if (!it) return 0;
    cs->head = it->next;
    if (!cs->head) cs->tail = NULL;
    cs->queued--;
    *ev = it->ev;
    if (it->data && data && cap) memcpy(data, it->data, it->ev.length < cap ? it->ev.length : cap);
    free(it->data);
    free(it);
    return 1;
}

int vigil_cs_mcast(vigil_cs *cs, const void *data, size_t len) {
    struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
    return cpg_mcast_joined(cs->cpg, CPG_TYPE_AGREED, &iov, 1);
}

int vigil_cs_local_nodeid(vigil_cs *cs, uint32_t *nodeid) {
    unsigned int n = 0;
    cs_error_t e = cpg_local_get(cs->cpg, &n);
    *nodeid = n;
    return e;
}

int vigil_cs_quorum_info(vigil_cs *cs, uint32_t *quorate, uint32_t *expected, uint32_t *total, uint32_t *quorum) {
    struct votequorum_info info;
    memset(&info, 0, sizeof info);
    unsigned int self = 0;
    cs_error_t e = cpg_local_get(cs->cpg, &self);
    if (e != CS_OK) return e;
    e = votequorum_getinfo(cs->vq, self, &info);
    if (e != CS_OK) return e;
    *quorate = (info.flags & VOTEQUORUM_INFO_QUORATE) ? 1 : 0;
    *expected = info.node_expected_votes;
    *total = info.total_votes;
    *quorum = info.quorum;
    return CS_OK;
}

int vigil_cs_cmap_u32(vigil_cs *cs, const char *key, uint32_t *value) { return cmap_get_uint32(cs->cmap, key, value); }

static int copy_string(cmap_handle_t h, const char *key, char *buf, size_t cap) {
    char *s = NULL;
    cs_error_t e = cmap_get_string(h, key, &s);
    if (e != CS_OK) return e;
    snprintf(buf, cap, "%s", s);
    free(s);
    return CS_OK;
}

int vigil_cs_cmap_string(vigil_cs *cs, const char *key, char *buf, size_t cap) { return copy_string(cs->cmap, key, buf, cap); }

int vigil_cs_cmap_int(vigil_cs *cs, const char *key, int64_t *value) {
    union { int8_t i8; uint8_t u8; int16_t i16; uint16_t u16; int32_t i32; uint32_t u32; int64_t i64; uint64_t u64; } v;
    size_t len = sizeof v;
    cmap_value_types_t type;
    memset(&v, 0, sizeof v);
    cs_error_t e = cmap_get(cs->cmap, key, &v, &len, &type);
    if (e != CS_OK) return e;
    switch (type) {
    case CMAP_VALUETYPE_INT8: *value = v.i8; break;
    case CMAP_VALUETYPE_UINT8: *value = v.u8; break;
    case CMAP_VALUETYPE_INT16: *value = v.i16; break;
    case CMAP_VALUETYPE_UINT16: *value = v.u16; break;
    case CMAP_VALUETYPE_INT32: *value = v.i32; break;
    case CMAP_VALUETYPE_UINT32: *value = v.u32; break;
    case CMAP_VALUETYPE_INT64: *value = v.i64; break;
    case CMAP_VALUETYPE_UINT64: *value = (int64_t)v.u64; break;
    default: return CS_ERR_INVALID_PARAM;
    }
    return CS_OK;
}

int vigil_cs_cluster_name(vigil_cs *cs, char *buf, size_t cap) { return copy_string(cs->cmap, "totem.cluster_name", buf, cap); }

int vigil_cs_node_name(vigil_cs *cs, uint32_t nodeid, char *buf, size_t cap) {
    char key[128];
    for (int i = 0; i < 1024; i++) {
        uint32_t id = 0;
        snprintf(key, sizeof key, "nodelist.node.%d.nodeid", i);
        cs_error_t e = cmap_get_uint32(cs->cmap, key, &id);
        if (e == CS_ERR_NOT_EXIST) return CS_ERR_NOT_EXIST;
        if (e != CS_OK) return e;
        if (id != nodeid) continue;
        snprintf(key, sizeof key, "nodelist.node.%d.name", i);
        if (copy_string(cs->cmap, key, buf, cap) == CS_OK) return CS_OK;
        snprintf(key, sizeof key, "nodelist.node.%d.ring0_addr", i);
        return copy_string(cs->cmap, key, buf, cap);
    }
    return CS_ERR_NOT_EXIST;
}

int vigil_cs_node_links(vigil_cs *cs, uint32_t nodeid, uint8_t *reachable, uint8_t *enabled, uint8_t *connected, int max, int *links) {
    struct corosync_cfg_node_status_v1 st;
    memset(&st, 0, sizeof st);
    cs_error_t e = corosync_cfg_node_status_get(cs->cfg, nodeid, CFG_NODE_STATUS_V1, &st);
    if (e != CS_OK) return e;
    *reachable = st.reachable;
    int n = 0;
    for (int i = 0; i < CFG_MAX_LINKS && i < max; i++) {
        enabled[i] = st.link_status[i].enabled;
        connected[i] = st.link_status[i].connected;
        if (st.link_status[i].enabled) n = i + 1;
    }
    *links = n;
    return CS_OK;
}

const char *vigil_cs_strerror(int e) { return cs_strerror((cs_error_t)e); }
