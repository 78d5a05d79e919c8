/*
 * Descriptor-ring hot paths for Intel-style NICs, one batch per call from Python.
 *
 * Each descriptor owns one DMA buffer for its whole life (buffer i sits at buf + i * buf_size,
 * IOVA buf_iova + i * buf_size), so recycling a buffer is describing its descriptor to the device
 * again. Packets are copied between the caller's contiguous batch buffer and the ring buffers, and
 * the tail register is written once per batch. The descriptor layout is reached only through the
 * ring's format (struct ring_format), so the loops below serve any format.
 *
 * Everything the device wrote (lengths, flags) is checked before use: a length over buf_size is a
 * dropped frame, never a copy past a buffer.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "ring.h"

/*
 * DMA barriers, as Linux defines them per architecture (arch/<arch>/include/asm/barrier.h, io.h):
 *
 * x86-64: dma_wmb() and dma_rmb() are compiler barriers. Stores are not reordered with other
 *   stores (including the uncached store to a doorbell register: vfio-pci maps BARs uncached, never
 *   write-combined), loads are not reordered with other loads, and DMA is cache-coherent.
 * arm64: dma_wmb() is "dmb oshst" and dma_rmb() is "dmb oshld" (the outer-shareable domain, where
 *   the device's accesses are; the inner-shareable "dmb ish" a C11 fence gives is not enough), and
 *   writel() puts dma_wmb() before the store to the device register, as mmio_write32 does here.
 *
 * Any other architecture gets no barriers it can trust: ring_barrier_arch() returns "" and the
 * Python side refuses to open a device.
 */
#if defined(__x86_64__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define BARRIER_ARCH "x86_64"
#define dma_wmb() __asm__ __volatile__("" ::: "memory")
#define dma_rmb() __asm__ __volatile__("" ::: "memory")
#elif defined(__aarch64__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define BARRIER_ARCH "aarch64"
#define dma_wmb() __asm__ __volatile__("dmb oshst" ::: "memory")
#define dma_rmb() __asm__ __volatile__("dmb oshld" ::: "memory")
#else
#define BARRIER_ARCH ""
#define dma_wmb() __sync_synchronize()
#define dma_rmb() __sync_synchronize()
#endif

void ring_dma_wmb(void) { dma_wmb(); }
void ring_dma_rmb(void) { dma_rmb(); }
const char *ring_barrier_arch(void) { return BARRIER_ARCH; }

/* A doorbell: everything written to descriptors and buffers before it reaches the device first. */
static inline void mmio_write32(uint8_t *bar, uint32_t reg, uint32_t value)
{
    dma_wmb();
    *(volatile uint32_t *)(bar + reg) = value;
}

/* -- the legacy format --------------------------------------------------------------------------- */
#define FIELD(desc, type, member, ftype) (*(volatile ftype *)((desc) + offsetof(struct type, member)))

static void legacy_tx_describe(uint8_t *desc, uint64_t addr, uint16_t len)
{
    struct legacy_txd d = {0};
    d.addr = addr;
    d.length = len;
    d.cmd = LEGACY_TXD_CMD_EOP | LEGACY_TXD_CMD_IFCS | LEGACY_TXD_CMD_RS;
    memcpy(desc, &d, sizeof(d));
}

static void legacy_rx_describe(uint8_t *desc, uint64_t addr)
{
    struct legacy_rxd d = {0};
    d.addr = addr;
    memcpy(desc, &d, sizeof(d));
}

static int legacy_tx_done(const uint8_t *desc)
{
    return FIELD(desc, legacy_txd, status, const uint8_t) & LEGACY_DESC_DD;
}

static int legacy_rx_done(const uint8_t *desc)
{
    return FIELD(desc, legacy_rxd, status, const uint8_t) & LEGACY_DESC_DD;
}

static uint32_t legacy_rx_result(const uint8_t *desc, uint16_t *len)
{
    uint8_t status = FIELD(desc, legacy_rxd, status, const uint8_t);
    uint8_t errors = FIELD(desc, legacy_rxd, errors, const uint8_t);
    *len = FIELD(desc, legacy_rxd, length, const uint16_t);
    return ((status & LEGACY_RXD_EOP) ? RING_RX_EOP : 0) | (errors ? RING_RX_ERROR : 0);
}

struct ring_format ring_legacy = {
    .desc_size = sizeof(struct legacy_rxd),
    .tx_describe = legacy_tx_describe,
    .rx_describe = legacy_rx_describe,
    .tx_done = legacy_tx_done,
    .rx_done = legacy_rx_done,
    .rx_result = legacy_rx_result,
};

/* -- the advanced format (82575/82576 and later) --------------------------------------------------- */
static void adv_tx_describe(uint8_t *desc, uint64_t addr, uint16_t len)
{
    struct adv_txd d = {0};
    d.addr = addr;
    d.cmd_type_len = (uint32_t)len | ADV_TXD_DTYP_DATA | ADV_TXD_DCMD_DEXT | ADV_TXD_DCMD_EOP |
                     ADV_TXD_DCMD_IFCS | ADV_TXD_DCMD_RS;
    d.olinfo_status = (uint32_t)len << ADV_TXD_PAYLEN_SHIFT;
    memcpy(desc, &d, sizeof(d));
}

/* The read format: the buffer address, and a zero header address, whose bit 0 is where the device
 * will write DD; the whole descriptor is rewritten, as the last write-back overwrote the address. */
static void adv_rx_describe(uint8_t *desc, uint64_t addr)
{
    struct adv_rxd_read d = {0};
    d.pkt_addr = addr;
    memcpy(desc, &d, sizeof(d));
}

static int adv_tx_done(const uint8_t *desc)
{
    return FIELD(desc, adv_txd, olinfo_status, const uint32_t) & ADV_TXD_STAT_DD;
}

static int adv_rx_done(const uint8_t *desc)
{
    return FIELD(desc, adv_rxd_wb, status_error, const uint32_t) & ADV_RXD_STAT_DD;
}

static uint32_t adv_rx_result(const uint8_t *desc, uint16_t *len)
{
    uint32_t staterr = FIELD(desc, adv_rxd_wb, status_error, const uint32_t);
    *len = FIELD(desc, adv_rxd_wb, length, const uint16_t);
    return ((staterr & ADV_RXD_STAT_EOP) ? RING_RX_EOP : 0) | ((staterr & ADV_RXD_ERR_FRAME) ? RING_RX_ERROR : 0);
}

/* Both layouts of a receive descriptor and the transmit layout fill the same 16 bytes. */
typedef char adv_layouts_are_16_bytes[(sizeof(struct adv_txd) == 16 && sizeof(struct adv_rxd_read) == 16 &&
                                       sizeof(struct adv_rxd_wb) == 16) ? 1 : -1];

struct ring_format ring_advanced = {
    .desc_size = sizeof(struct adv_rxd_read),
    .tx_describe = adv_tx_describe,
    .rx_describe = adv_rx_describe,
    .tx_done = adv_tx_done,
    .rx_done = adv_rx_done,
    .rx_result = adv_rx_result,
};

/* -- the rings ----------------------------------------------------------------------------------- */
static inline uint8_t *desc_at(struct ring *r, uint32_t i)
{
    return r->desc + (size_t)i * r->fmt->desc_size;
}

static inline uint64_t iova_at(struct ring *r, uint32_t i)
{
    return r->buf_iova + (uint64_t)i * r->buf_size;
}

/* The loops divide by count and keep one slot empty: a ring of fewer than two descriptors, or of
 * empty buffers, is refused here whatever the caller checked (drivers/ring.py checks the rest of
 * the geometry, the sizes of the memory it hands over, which C cannot see). */
static inline int ring_usable(const struct ring *r)
{
    return r->count >= 2 && r->buf_size >= 1;
}

void ring_init_rx(struct ring *r)
{
    if (!ring_usable(r))
        return;
    for (uint32_t i = 0; i < r->count; i++)
        r->fmt->rx_describe(desc_at(r, i), iova_at(r, i));
    r->next = r->clean = r->discarding = 0;
    dma_wmb();  /* described before the caller enables the receiver */
}

void ring_init_tx(struct ring *r)
{
    if (!ring_usable(r))
        return;
    memset(r->desc, 0, (size_t)r->count * r->fmt->desc_size);
    r->next = r->clean = r->discarding = 0;
    dma_wmb();
}

/* Reclaim transmitted descriptors: those the device marked done, oldest first. */
static void tx_reclaim(struct ring *r)
{
    while (r->clean != r->next) {
        if (!r->fmt->tx_done(desc_at(r, r->clean)))
            break;
        dma_rmb();  /* the done bit before the buffer is reused */
        r->clean = (r->clean + 1) % r->count;
    }
}

int32_t ring_tx_batch(struct ring *r, const uint8_t *pkts, uint64_t pkts_size, const uint16_t *lens, uint32_t n)
{
    if (!ring_usable(r))
        return RING_E_GEOMETRY;
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {  /* the whole batch is checked before the ring is touched */
        if (lens[i] == 0 || lens[i] > r->buf_size)
            return RING_E_LENGTH;
        total += lens[i];
    }
    if (total > pkts_size)
        return RING_E_SHORT;

    /* The caller's lengths stay shared while this runs (cffi releases the GIL), so each is read
     * once more, into a local, and that local is checked again against the buffer and the bytes
     * left before it is used: a length rewritten since the check above ends the batch there. */
    uint64_t used = 0;
    uint32_t sent = 0;
    tx_reclaim(r);
    while (sent < n) {
        uint32_t after = (r->next + 1) % r->count;
        if (after == r->clean)  /* ring full: one slot stays empty */
            break;
        uint16_t len = *(volatile const uint16_t *)&lens[sent];
        if (len == 0 || len > r->buf_size || len > pkts_size - used)
            break;
        memcpy(r->buf + (size_t)r->next * r->buf_size, pkts + used, len);
        r->fmt->tx_describe(desc_at(r, r->next), iova_at(r, r->next), len);
        used += len;
        r->next = after;
        sent++;
    }
    if (sent)
        mmio_write32(r->bar, r->tail_reg, r->next);
    r->packets += sent;
    return (int32_t)sent;
}

uint32_t ring_tx_pending(struct ring *r)
{
    if (!ring_usable(r))
        return 0;
    tx_reclaim(r);
    return (r->next + r->count - r->clean) % r->count;
}

uint32_t ring_rx_batch(struct ring *r, uint8_t *out, uint64_t out_size, uint16_t *lens, uint32_t max)
{
    const struct ring_format *f = r->fmt;
    uint32_t got = 0;
    uint64_t used = 0;
    uint32_t last = r->count;

    if (!ring_usable(r) || out_size < r->buf_size)
        return 0;  /* a frame the ring holds might never fit: nothing taken, nothing dropped */
    while (got < max) {
        uint8_t *d = desc_at(r, r->next);
        if (!f->rx_done(d))
            break;
        dma_rmb();  /* the done bit before anything else the device wrote */
        uint16_t len;
        uint32_t res = f->rx_result(d, &len);
        if (r->discarding) {  /* the rest of a frame already dropped */
            if (res & RING_RX_EOP)
                r->discarding = 0;
        } else if (!(res & RING_RX_EOP)) {  /* a frame over several descriptors: drop it whole */
            r->dropped++;
            r->discarding = 1;
        } else if ((res & RING_RX_ERROR) || len == 0 || len > r->buf_size || len > out_size) {
            r->dropped++;  /* in error, empty, a length no buffer holds, or too long for any batch */
        } else if (used + len > out_size) {
            break;  /* fits the next batch */
        } else {
            memcpy(out + used, r->buf + (size_t)r->next * r->buf_size, len);
            used += len;
            lens[got++] = len;
        }
        f->rx_describe(d, iova_at(r, r->next));
        last = r->next;
        r->next = (r->next + 1) % r->count;
    }
    if (last != r->count)  /* hand the consumed descriptors (and their buffers) back */
        mmio_write32(r->bar, r->tail_reg, last);
    r->packets += got;
    return got;
}
