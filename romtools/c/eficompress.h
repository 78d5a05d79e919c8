/*
 * EFI 1.1 compression ("UEFI Compression Algorithm"): the encoder that option-ROM
 * builders use for compressed EFI images, and a decoder that treats its input as hostile.
 *
 * Both entry points allocate their result with malloc; the caller frees it with
 * efic_release(). Neither keeps state between calls, so they may run in parallel.
 */
#ifndef ROMLAB_EFICOMPRESS_H
#define ROMLAB_EFICOMPRESS_H

#include <stddef.h>
#include <stdint.h>

/* Result codes. */
#define EFIC_OK            0
#define EFIC_ENOMEM        1   /* malloc failed */
#define EFIC_ETOOBIG       2   /* input above EFIC_MAX_INPUT */
#define EFIC_EINTERNAL     3   /* the match finder lost track of its own state */
#define EFIC_ESHORT        10  /* fewer than 8 bytes: no header */
#define EFIC_ECOMPSIZE     11  /* header's compressed size runs past the data */
#define EFIC_EORIGSIZE     12  /* header's original size is above the caller's cap */
#define EFIC_EBITS         13  /* the bit stream ends inside a block */
#define EFIC_EBLOCK        14  /* a block announces zero symbols */
#define EFIC_ECOUNT        15  /* a table announces more lengths than its alphabet has */
#define EFIC_ESYMBOL       16  /* a one-symbol table names a symbol outside its alphabet */
#define EFIC_ELENGTH       17  /* a code length above 16 */
#define EFIC_ERUN          18  /* a run of zero lengths runs past the table */
#define EFIC_EINCOMPLETE   19  /* code lengths leave part of the code space unused */
#define EFIC_EOVERFULL     20  /* code lengths claim more code space than exists */
#define EFIC_EDISTANCE     21  /* a copy reaches back before the start of the output */
#define EFIC_EOVERRUN      22  /* a copy runs past the announced original size */
#define EFIC_ELEFTOVER     23  /* the last block holds symbols beyond the original size */

/* Largest input the encoder takes: positions are kept in 32-bit signed integers. */
#define EFIC_MAX_INPUT     (1u << 30)

/* Which table a decoding fault is about (efic_fault.table). */
#define EFIC_TABLE_NONE    0
#define EFIC_TABLE_EXTRA   1   /* the table that codes the char/length code lengths */
#define EFIC_TABLE_CHARLEN 2
#define EFIC_TABLE_POS     3

/* Where and why decoding stopped, for a message a person can act on. */
struct efic_fault {
    int table;          /* EFIC_TABLE_* */
    long long block;    /* 1-based block number, 0 before the first block */
    long long bit;      /* bit offset into the stream after the 8-byte header */
    long long a, b;     /* code-specific numbers (sizes, counts, symbols) */
};

/* What the encoder did, for tests and benches. */
struct efic_stats {
    unsigned long long blocks;
    unsigned long long fixups;  /* matches the finder offered that did not hold (always 0
                                   unless its state went wrong); each became a literal */
};

int efic_compress(const uint8_t *src, size_t n, uint8_t **out, size_t *out_len,
                  struct efic_stats *stats);
int efic_decompress(const uint8_t *src, size_t n, size_t max_out, uint8_t **out,
                    size_t *out_len, struct efic_fault *fault);
void efic_release(void *p);

#endif
