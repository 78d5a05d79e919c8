#ifndef ROMLAB_RING_H
#define ROMLAB_RING_H
#include <stdint.h>

struct ring {
    uint8_t *bar;        /* mapped BAR0 */
    uint32_t tail_reg;   /* RDT or TDT offset */
    uint8_t *desc;       /* descriptor ring (count * 16 bytes) */
    uint8_t *buf;        /* count * buf_size bytes of packet buffers */
    uint64_t buf_iova;
    uint32_t buf_size;
    uint32_t count;
    uint32_t next;       /* next descriptor to fill (tx) or read (rx) */
    uint32_t clean;      /* oldest descriptor not yet reclaimed (tx) */
    uint64_t packets;
    uint64_t dropped;
};

void ring_init_rx(struct ring *r);
void ring_init_tx(struct ring *r);
uint32_t ring_tx_batch(struct ring *r, const uint8_t *pkts, const uint16_t *lens, uint32_t n);
uint32_t ring_tx_pending(struct ring *r);
uint32_t ring_rx_batch(struct ring *r, uint8_t *out, uint32_t out_size, uint16_t *lens, uint32_t max);
#endif
