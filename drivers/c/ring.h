#ifndef ROMLAB_RING_H
#define ROMLAB_RING_H
/*
 * Descriptor rings for Intel-style NICs: the one declaration of the descriptor layouts (legacy and
 * advanced), the ring
 * state and the entry points. The C ring (ring.c) compiles against it; the Python ring
 * (drivers/ring.py, drivers/descriptors.py) reads the same layouts and constants through cffi, so
 * there is no second copy of a descriptor format anywhere.
 *
 * Keep this header to plain declarations: romtools/cheader.py hands it to cffi, which takes each
 * "#define NAME value" as an integer constant and ignores other preprocessor lines.
 */
#include <stdint.h>

/* Legacy descriptors, 16 bytes, little-endian (8254x/8257x software developer's manuals:
 * "Legacy Transmit Descriptor Format", "Receive Descriptor Format"). */
struct legacy_txd {
    uint64_t addr;      /* buffer address (IOVA) */
    uint16_t length;    /* bytes to send from the buffer */
    uint8_t cso;        /* checksum offset: unused */
    uint8_t cmd;        /* LEGACY_TXD_CMD_* */
    uint8_t status;     /* written back: LEGACY_DESC_DD once sent */
    uint8_t css;        /* checksum start: unused */
    uint16_t special;
};

struct legacy_rxd {
    uint64_t addr;      /* buffer address (IOVA) */
    uint16_t length;    /* written back: bytes the device put in the buffer */
    uint16_t csum;
    uint8_t status;     /* written back: LEGACY_DESC_DD, LEGACY_RXD_EOP */
    uint8_t errors;     /* written back: non-zero for a frame received in error */
    uint16_t special;
};

#define LEGACY_TXD_CMD_EOP 0x01   /* end of packet: this descriptor ends the frame */
#define LEGACY_TXD_CMD_IFCS 0x02  /* insert the frame check sequence */
#define LEGACY_TXD_CMD_RS 0x08    /* report status: set DD when sent */
#define LEGACY_DESC_DD 0x01       /* descriptor done */
#define LEGACY_RXD_EOP 0x02       /* this descriptor ends the frame */

/* Advanced descriptors, 16 bytes, little-endian, of the 82575/82576 (igb) and later (82576 datasheet
 * "Advanced Transmit Data Descriptor", "Advanced Receive Descriptors"; Linux e1000_82575.h's
 * e1000_adv_tx_desc and e1000_adv_rx_desc). One transmit layout serves both directions of use (the
 * device writes DD back into the low bit of olinfo_status). A receive descriptor has two layouts in
 * the same 16 bytes: the one software writes (read format: buffer address, header address) and the
 * one the device writes back over it, which overwrites the buffer address, so a receive descriptor is
 * described afresh every time it goes back to the device. */
struct adv_txd {
    uint64_t addr;           /* buffer address (IOVA) */
    uint32_t cmd_type_len;   /* length (15:0), DTYP (23:20), DCMD (31:24) */
    uint32_t olinfo_status;  /* PAYLEN (31:14); written back: ADV_TXD_STAT_DD once sent */
};

struct adv_rxd_read {
    uint64_t pkt_addr;       /* packet buffer address (IOVA) */
    uint64_t hdr_addr;       /* header buffer address: unused (one-buffer mode); its bit 0 is where DD lands */
};

struct adv_rxd_wb {
    uint16_t pkt_info;       /* packet type, RSS type */
    uint16_t hdr_info;
    uint32_t rss;            /* RSS hash, or IP identification and checksum */
    uint32_t status_error;   /* extended status (19:0) and errors (31:20): ADV_RXD_STAT_*, ADV_RXD_ERR_FRAME */
    uint16_t length;         /* bytes the device put in the buffer */
    uint16_t vlan;
};

#define ADV_TXD_DTYP_DATA 0x00300000  /* descriptor type 0011b: advanced data */
#define ADV_TXD_DCMD_EOP 0x01000000   /* end of packet */
#define ADV_TXD_DCMD_IFCS 0x02000000  /* insert the frame check sequence */
#define ADV_TXD_DCMD_RS 0x08000000    /* report status */
#define ADV_TXD_DCMD_DEXT 0x20000000  /* descriptor extension: an advanced descriptor */
#define ADV_TXD_PAYLEN_SHIFT 14       /* olinfo_status: payload length, the whole frame here */
#define ADV_TXD_LEN_MASK 0xFFFF
#define ADV_TXD_STAT_DD 0x00000001    /* written back: descriptor done */
#define ADV_RXD_STAT_DD 0x00000001    /* descriptor done */
#define ADV_RXD_STAT_EOP 0x00000002   /* this descriptor ends the frame */
/* Frame errors that make the frame unusable: CE, SE, SEQ, CXE and RXE (bits 24, 25, 26, 28, 31), the
 * set Linux igb drops on (E1000_RXDEXT_ERR_FRAME_ERR_MASK); checksum results (IPE, L4E) are not
 * among them, as no offload is asked for. */
#define ADV_RXD_ERR_FRAME 0x97000000

/* What a format's rx_result reports, whatever its own bits are. */
#define RING_RX_EOP 0x01
#define RING_RX_ERROR 0x02

/* tx_batch refusals: the whole batch is refused and the ring left as it was. */
#define RING_E_LENGTH -1  /* a length is 0 or over buf_size */
#define RING_E_SHORT -2   /* the lengths add up to more bytes than the batch holds */
#define RING_E_GEOMETRY -3  /* fewer than 2 descriptors or no buffer bytes: the ring cannot run */

/*
 * A descriptor format: how a ring fills and reads the descriptors of one family, so that a second
 * format (the advanced descriptors of igb/ixgbe) is a second table, not a second ring. The ring
 * reads a written-back descriptor in two steps, done bit first (rx_done/tx_done), then, after a
 * read barrier, the rest (rx_result); describing a descriptor hands it (back) to the device.
 */
struct ring_format {
    uint32_t desc_size;
    void (*tx_describe)(uint8_t *desc, uint64_t addr, uint16_t len);
    void (*rx_describe)(uint8_t *desc, uint64_t addr);
    int (*tx_done)(const uint8_t *desc);
    int (*rx_done)(const uint8_t *desc);
    uint32_t (*rx_result)(const uint8_t *desc, uint16_t *len);  /* RING_RX_* flags; *len set */
};

extern struct ring_format ring_legacy;  /* not const: cffi gives Python the address of a variable only */
extern struct ring_format ring_advanced;

struct ring {
    const struct ring_format *fmt;
    uint8_t *bar;        /* mapped BAR0 */
    uint32_t tail_reg;   /* RDT or TDT offset */
    uint8_t *desc;       /* descriptor ring (count * fmt->desc_size bytes) */
    uint8_t *buf;        /* count * buf_size bytes of packet buffers */
    uint64_t buf_iova;
    uint32_t buf_size;
    uint32_t count;
    uint32_t next;       /* next descriptor to fill (tx) or read (rx) */
    uint32_t clean;      /* oldest descriptor not yet reclaimed (tx) */
    uint32_t discarding; /* rx: inside a frame being dropped, until its end-of-packet descriptor */
    uint64_t packets;
    uint64_t dropped;    /* rx: frames dropped (spanning descriptors, in error, or too long) */
};

void ring_init_rx(struct ring *r);
void ring_init_tx(struct ring *r);
int32_t ring_tx_batch(struct ring *r, const uint8_t *pkts, uint64_t pkts_size, const uint16_t *lens, uint32_t n);
uint32_t ring_tx_pending(struct ring *r);
uint32_t ring_rx_batch(struct ring *r, uint8_t *out, uint64_t out_size, uint16_t *lens, uint32_t max);

/* The DMA barriers the rings use, for the Python ring to call, and the architecture they were
 * written for ("" when this build has none it can vouch for). */
void ring_dma_wmb(void);
void ring_dma_rmb(void);
const char *ring_barrier_arch(void);
#endif
