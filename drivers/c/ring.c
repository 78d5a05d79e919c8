/*
 * Descriptor-ring hot paths for Intel-style NICs with 16-byte legacy descriptors
 * (8254x e1000, 8257x e1000e in legacy mode).
 *
 * Each descriptor owns one DMA buffer for its whole life (buffer i sits at
 * buf_base + i * buf_size, IOVA buf_iova + i * buf_size), so recycling a
 * buffer is just handing its descriptor back to the device. A batch crosses
 * from Python once: packets are copied between the caller's contiguous batch
 * buffer and the ring buffers, and the tail register is written once per batch.
 */
#include <stdint.h>
#include <string.h>
#include "ring.h"

#define TXD_CMD_EOP 0x01
#define TXD_CMD_IFCS 0x02
#define TXD_CMD_RS 0x08
#define DESC_DD 0x01
#define RXD_EOP 0x02

struct legacy_txd {
    uint64_t addr;
    uint16_t length;
    uint8_t cso;
    uint8_t cmd;
    volatile uint8_t status;
    uint8_t css;
    uint16_t special;
};

struct legacy_rxd {
    uint64_t addr;
    volatile uint16_t length;
    uint16_t csum;
    volatile uint8_t status;
    volatile uint8_t errors;
    uint16_t special;
};

static inline void mmio_write32(uint8_t *bar, uint32_t reg, uint32_t value)
{
    __atomic_thread_fence(__ATOMIC_RELEASE);
    *(volatile uint32_t *)(bar + reg) = value;
}

void ring_init_rx(struct ring *r)
{
    struct legacy_rxd *d = (struct legacy_rxd *)r->desc;
    for (uint32_t i = 0; i < r->count; i++) {
        memset(&d[i], 0, sizeof(d[i]));
        d[i].addr = r->buf_iova + (uint64_t)i * r->buf_size;
    }
    r->next = 0;
    r->clean = 0;
}

void ring_init_tx(struct ring *r)
{
    memset(r->desc, 0, (size_t)r->count * sizeof(struct legacy_txd));
    r->next = 0;
    r->clean = 0;
}

/* Reclaim transmitted descriptors: those the device marked done, oldest first. */
static uint32_t tx_reclaim(struct ring *r)
{
    struct legacy_txd *d = (struct legacy_txd *)r->desc;
    uint32_t freed = 0;
    while (r->clean != r->next) {
        if (!(d[r->clean].status & DESC_DD))
            break;
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        d[r->clean].status = 0;
        r->clean = (r->clean + 1) % r->count;
        freed++;
    }
    return freed;
}

uint32_t ring_tx_batch(struct ring *r, const uint8_t *pkts, const uint16_t *lens, uint32_t n)
{
    struct legacy_txd *d = (struct legacy_txd *)r->desc;
    const uint8_t *src = pkts;
    uint32_t sent = 0;

    tx_reclaim(r);
    while (sent < n) {
        uint32_t after = (r->next + 1) % r->count;
        if (after == r->clean)  /* ring full: one slot stays empty */
            break;
        uint16_t len = lens[sent];
        if (len > r->buf_size)
            len = (uint16_t)r->buf_size;
        memcpy(r->buf + (size_t)r->next * r->buf_size, src, len);
        d[r->next].addr = r->buf_iova + (uint64_t)r->next * r->buf_size;
        d[r->next].length = len;
        d[r->next].cso = 0;
        d[r->next].css = 0;
        d[r->next].special = 0;
        d[r->next].status = 0;
        d[r->next].cmd = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS;
        src += lens[sent];
        r->next = after;
        sent++;
    }
    if (sent)
        mmio_write32(r->bar, r->tail_reg, r->next);
    r->packets += sent;
    return sent;
}

uint32_t ring_tx_pending(struct ring *r)
{
    tx_reclaim(r);
    return (r->next + r->count - r->clean) % r->count;
}

uint32_t ring_rx_batch(struct ring *r, uint8_t *out, uint32_t out_size, uint16_t *lens, uint32_t max)
{
    struct legacy_rxd *d = (struct legacy_rxd *)r->desc;
    uint32_t got = 0;
    size_t used = 0;
    uint32_t last = r->count;

    while (got < max) {
        struct legacy_rxd *rx = &d[r->next];
        if (!(rx->status & DESC_DD))
            break;
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        uint16_t len = rx->length;
        if (used + len > out_size)
            break;
        if ((rx->status & RXD_EOP) && !rx->errors) {
            memcpy(out + used, r->buf + (size_t)r->next * r->buf_size, len);
            used += len;
            lens[got++] = len;
        } else {
            r->dropped++;
        }
        rx->status = 0;
        rx->errors = 0;
        rx->length = 0;
        last = r->next;
        r->next = (r->next + 1) % r->count;
    }
    if (last != r->count)  /* hand the consumed descriptors (and their buffers) back */
        mmio_write32(r->bar, r->tail_reg, last);
    r->packets += got;
    return got;
}
