/*
 * EFI 1.1 compression for romlab.
 *
 * Stream layout: a header of two little-endian u32 (bytes of stream that follow the
 * header, bytes the stream expands to), then blocks, most significant bit first. A block
 * is a 16-bit symbol count and three prefix-code tables, followed by the symbols:
 *
 *   extra table    codes the char/length code lengths: symbols 0..2 are runs of zero
 *                  lengths (1; 3..18 with 4 more bits; 20.. with 9 more bits), symbol
 *                  k+2 is length k.  Count in 5 bits, lengths as 3 bits (7 and above go
 *                  on in unary), and after the third length 2 bits of zero lengths skipped.
 *   char/length    510 symbols: bytes 0..255, then copies of 3..256 bytes.  Count in
 *                  9 bits, lengths through the extra table.
 *   position       14 classes of copy distance: class 0 and 1 are distance-1 = 0 and 1,
 *                  class c > 1 adds c-1 bits below a leading one.  Count in 4 bits.
 *
 * A table with a count of zero is followed by the single symbol it always decodes to,
 * in the same number of bits, and costs no bits per symbol.
 *
 * The encoder makes the decisions EDK2's EfiCompress makes, so that images rebuilt by
 * romlab match images built by EfiRom or iPXE byte for byte:
 *   - matches of up to 256 bytes within the last 8 KiB, the longest one, at the position
 *     a Patricia trie with lazily propagated positions offers for it;
 *   - a one-step lookahead that drops a match when the next position has a longer one;
 *   - blocks closed when a 16 KiB staging budget (one flag byte per eight symbols, one
 *     byte per literal, three per copy) is nearly spent;
 *   - Huffman codes from a binary heap, cut to 16 bits by moving leaves down from the
 *     deepest levels shorter than 16 that still have them.
 *
 * The decoder trusts nothing: every size, table and copy is checked before use, and
 * output grows only as symbols produce it, up to the size the caller allows.
 */
#include "eficompress.h"

#include <stdlib.h>
#include <string.h>

#define WIN_BITS    13
#define WIN         (1 << WIN_BITS)         /* history the copies may reach into */
#define WIN_MASK    (WIN - 1)
#define MATCH_MAX   256
#define MATCH_MIN   3
#define NC          (256 + MATCH_MAX - MATCH_MIN + 1)   /* 510 */
#define NP          (WIN_BITS + 1)                      /* 14 */
#define NT          19
#define C_NBITS     9
#define P_NBITS     4
#define T_NBITS     5
#define LEN_MAX     16
#define STAGE_BYTES 16384
#define STAGE_ITEMS 16384   /* > the most symbols STAGE_BYTES can hold */

/* ------------------------------------------------------------------------------------
 * Match finder.
 *
 * Node ids: a leaf is the window slot (position mod WIN) of the string it stands for,
 * 0..WIN-1; branches are WIN..2*WIN-1; the root for strings starting with byte b is
 * 2*WIN+b.  Branch and root data live in arrays indexed by id - WIN.  Children are
 * found through a hash of (parent, edge byte) with chained buckets; the hash is
 * one-to-one in the byte for a fixed parent, so a bucket never holds two children of
 * the same parent and a lookup need only compare parents.
 *
 * Every branch keeps `seen`, a position of a string below it, used as the match
 * candidate when a search stops inside the branch's edge.  Keeping it exact would mean
 * walking to the root on every insert; instead a branch that got a newer position
 * without passing it on carries `owes`, and the next update that reaches an owing
 * branch passes on to its parent as well.  Positions are read back as the position in
 * the WIN bytes before the current one that has the same window slot.
 * ------------------------------------------------------------------------------------ */

typedef int16_t node_t;
#define NONE        ((node_t)-1)
#define BRANCH0     WIN
#define ROOT0       (2 * WIN)
#define NODES       (2 * WIN + 256)
#define INNER       (WIN + 256)
#define BUCKET_BITS 15
#define BUCKETS     (1 << BUCKET_BITS)

struct trie {
    const uint8_t *text;        /* text[p] is readable for -WIN <= p < n + MATCH_MAX + 16 */
    int32_t pos;                /* the position being added */
    int32_t mlen, mpos;         /* its longest match */
    node_t up[NODES];           /* parent, NONE when not in the trie */
    node_t fwd[NODES], back[NODES];
    uint16_t home[NODES];       /* the bucket a node is chained in */
    node_t head[BUCKETS];
    uint16_t depth[INNER];
    int32_t seen[INNER];
    uint8_t owes[INNER];
    uint16_t kids[INNER];
    node_t moved_to[WIN];       /* leaf that took this leaf's place (same 256 bytes) */
    node_t spare[WIN];
    int nspare;
    int broken;
};

static inline int is_leaf(node_t x) { return x < BRANCH0; }
static inline int is_branch(node_t x) { return x >= BRANCH0 && x < ROOT0; }
static inline node_t leaf_at(int32_t p) { return (node_t)(p & WIN_MASK); }

static inline unsigned bucket_of(node_t parent, uint8_t c)
{
    return (((unsigned)c << (BUCKET_BITS - 8)) ^ (unsigned)parent) & (BUCKETS - 1);
}

/* The position among the WIN before the current one with the same window slot as x. */
static inline int32_t in_window(const struct trie *t, int32_t x)
{
    return t->pos - WIN + (int32_t)((uint32_t)(x - t->pos) & WIN_MASK);
}

static void chain_link(struct trie *t, node_t x, unsigned b)
{
    node_t h = t->head[b];
    t->fwd[x] = h;
    t->back[x] = NONE;
    if (h != NONE)
        t->back[h] = x;
    t->head[b] = x;
    t->home[x] = (uint16_t)b;
}

static void chain_unlink(struct trie *t, node_t x)
{
    node_t f = t->fwd[x], k = t->back[x];
    if (k == NONE)
        t->head[t->home[x]] = f;
    else
        t->fwd[k] = f;
    if (f != NONE)
        t->back[f] = k;
}

static node_t child_of(const struct trie *t, node_t parent, uint8_t c)
{
    node_t x;
    for (x = t->head[bucket_of(parent, c)]; x != NONE; x = t->fwd[x])
        if (t->up[x] == parent)
            return x;
    return NONE;
}

static void adopt(struct trie *t, node_t parent, uint8_t c, node_t x)
{
    chain_link(t, x, bucket_of(parent, c));
    t->up[x] = parent;
    t->kids[parent - WIN]++;
}

/* x takes y's place under y's parent, along the same edge byte; y leaves the trie. */
static void substitute(struct trie *t, node_t y, node_t x)
{
    unsigned b = t->home[y];
    chain_unlink(t, y);
    chain_link(t, x, b);
    t->up[x] = t->up[y];
    t->up[y] = NONE;
}

/* The search for pos left `below`'s edge after mlen bytes: put a branch there. */
static void split_above(struct trie *t, node_t below)
{
    node_t mid;
    int i;
    if (t->nspare == 0) {
        t->broken = 1;
        return;
    }
    mid = t->spare[--t->nspare];
    i = mid - WIN;
    substitute(t, below, mid);
    t->depth[i] = (uint16_t)t->mlen;
    t->seen[i] = t->pos;
    t->owes[i] = 0;
    t->kids[i] = 0;
    adopt(t, mid, t->text[t->mpos + t->mlen], below);
    adopt(t, mid, t->text[t->pos + t->mlen], leaf_at(t->pos));
}

/* A branch got pos from below: record it, and pass it on while the branches above owe. */
static void pass_up(struct trie *t, node_t a, int32_t p)
{
    while (is_branch(a) && t->owes[a - WIN]) {
        t->seen[a - WIN] = p;
        t->owes[a - WIN] = 0;
        a = t->up[a];
    }
    if (is_branch(a)) {
        t->seen[a - WIN] = p;
        t->owes[a - WIN] = 1;
    }
}

/*
 * After a match of mlen >= 4 at mpos, the string at pos shares mlen-1 bytes with the
 * one at mpos+1, so the search can start at the deepest node above that leaf that is
 * shallower than mlen-1 instead of at the root.  Returns 0 when the leaf cannot be
 * found, and the caller searches from the root.
 */
static int resume_below(struct trie *t, node_t *qo, node_t *ro)
{
    node_t r = leaf_at(t->mpos + 1), q;
    int hops = 0;
    while ((q = t->up[r]) == NONE) {
        r = t->moved_to[r];
        if (r == NONE || ++hops > WIN)
            return 0;
    }
    t->mlen--;
    while (t->depth[q - WIN] >= t->mlen) {
        r = q;
        q = t->up[q];
    }
    pass_up(t, q, t->pos);
    *qo = q;
    *ro = r;
    return 1;
}

/* Add the string at pos and leave its longest earlier match in mlen/mpos. */
static void trie_add(struct trie *t)
{
    const uint8_t *s = t->text;
    int32_t p = t->pos;
    node_t q, r;

    t->moved_to[p & WIN_MASK] = NONE;
    if (!(t->mlen >= 4 && resume_below(t, &q, &r))) {
        q = (node_t)(ROOT0 + s[p]);
        r = child_of(t, q, s[p + 1]);
        if (r == NONE) {
            adopt(t, q, s[p + 1], leaf_at(p));
            t->mlen = 1;
            return;
        }
        t->mlen = 2;
    }
    for (;;) {
        int32_t limit, cand, len;
        if (is_leaf(r)) {
            limit = MATCH_MAX;
            cand = in_window(t, r);
        } else {
            limit = t->depth[r - WIN];
            cand = in_window(t, t->seen[r - WIN]);
        }
        len = t->mlen;
        while (len < limit && s[p + len] == s[cand + len])
            len++;
        t->mpos = cand;
        t->mlen = len;
        if (len < limit) {
            split_above(t, r);
            return;
        }
        if (len >= MATCH_MAX)
            break;
        t->seen[r - WIN] = p;
        t->owes[r - WIN] = 0;
        q = r;
        r = child_of(t, q, s[p + len]);
        if (r == NONE) {
            adopt(t, q, s[p + len], leaf_at(p));
            return;
        }
        t->mlen = len + 1;
    }
    /* 256 equal bytes: the new leaf stands in for the old one. */
    substitute(t, r, leaf_at(p));
    t->moved_to[r] = leaf_at(p);
}

/* Remove the string WIN bytes back, whose slot pos is about to take. */
static void trie_drop_oldest(struct trie *t)
{
    node_t leaf = leaf_at(t->pos), r = t->up[leaf], a, only;
    int32_t keep, best, u;
    int ri, c;

    if (r == NONE)
        return;
    chain_unlink(t, leaf);
    t->up[leaf] = NONE;
    if (!is_branch(r))
        return;
    ri = r - WIN;
    if (--t->kids[ri] > 1)
        return;

    /* r is down to one child: fold it away, handing its position to the owing branches above. */
    keep = in_window(t, t->seen[ri]);
    best = keep;
    a = t->up[r];
    while (is_branch(a) && t->owes[a - WIN]) {
        u = in_window(t, t->seen[a - WIN]);
        if (u > best)
            best = u;
        t->seen[a - WIN] = best;
        t->owes[a - WIN] = 0;
        a = t->up[a];
    }
    if (is_branch(a)) {
        u = in_window(t, t->seen[a - WIN]);
        if (u > best)
            best = u;
        t->seen[a - WIN] = best;
        t->owes[a - WIN] = 1;
    }
    only = child_of(t, r, t->text[keep + t->depth[ri]]);
    for (c = 0; only == NONE && c < 256; c++)
        only = child_of(t, r, (uint8_t)c);
    if (only == NONE) {
        t->broken = 1;
        return;
    }
    chain_unlink(t, only);
    substitute(t, r, only);
    t->spare[t->nspare++] = r;
}

static void trie_init(struct trie *t, const uint8_t *text)
{
    int i;
    t->text = text;
    t->pos = 0;
    t->mlen = 0;
    t->mpos = 0;
    for (i = 0; i < NODES; i++)
        t->up[i] = NONE;
    for (i = 0; i < BUCKETS; i++)
        t->head[i] = NONE;
    for (i = 0; i < WIN; i++) {
        t->moved_to[i] = NONE;
        t->spare[i] = (node_t)(ROOT0 - 1 - i);
    }
    t->nspare = WIN;
    for (i = 0; i < INNER; i++) {
        t->depth[i] = 1;
        t->seen[i] = 0;
        t->owes[i] = 0;
        t->kids[i] = 0;
    }
    t->broken = 0;
}

/* ------------------------------------------------------------------------------------
 * Bit output, most significant bit first, into a growing buffer.
 * ------------------------------------------------------------------------------------ */

struct sink {
    uint8_t *buf;
    size_t len, cap;
    uint32_t acc;
    int nacc;
    int failed;
};

static void sink_byte(struct sink *k, uint8_t b)
{
    if (k->len == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 4096;
        uint8_t *nb = realloc(k->buf, cap);
        if (!nb) {
            k->failed = 1;
            return;
        }
        k->buf = nb;
        k->cap = cap;
    }
    k->buf[k->len++] = b;
}

static void put(struct sink *k, int nbits, uint32_t v)
{
    if (nbits <= 0)
        return;
    k->acc = (k->acc << nbits) | (v & ((1u << nbits) - 1));
    k->nacc += nbits;
    while (k->nacc >= 8) {
        k->nacc -= 8;
        sink_byte(k, (uint8_t)(k->acc >> k->nacc));
    }
    k->acc &= (1u << k->nacc) - 1;
}

static void sink_flush(struct sink *k)
{
    if (k->nacc > 0)
        sink_byte(k, (uint8_t)(k->acc << (8 - k->nacc)));
    k->acc = 0;
    k->nacc = 0;
}

/* ------------------------------------------------------------------------------------
 * Huffman codes.
 * ------------------------------------------------------------------------------------ */

struct huff {
    int16_t heap[NC + 1];
    uint16_t lo[2 * NC], hi[2 * NC];
    uint16_t order[NC];        /* leaves in the order they left the heap: rarest first */
    uint16_t at_len[LEN_MAX + 1];
    int32_t stack[4 * NC];
};

static void sift_down(int16_t *heap, int size, int i, const uint16_t *w)
{
    int16_t x = heap[i];
    for (;;) {
        int c = 2 * i;
        if (c > size)
            break;
        if (c < size && w[heap[c]] > w[heap[c + 1]])
            c++;
        if (w[x] <= w[heap[c]])
            break;
        heap[i] = heap[c];
        i = c;
    }
    heap[i] = x;
}

/*
 * Build a code for nsym symbols with weights w[0..nsym) (w needs room for 2*nsym-1
 * entries: merged weights go after the symbols).  Returns the tree root, which is
 * >= nsym when a real code was built; otherwise it is the only symbol in use (0 when
 * none is) and every length is 0.
 */
static int build_code(struct huff *h, int nsym, uint16_t *w, uint8_t *len, uint16_t *code)
{
    int size = 0, next = nsym, nord = 0, root = 0, i, sp, l;
    uint32_t kraft, start[LEN_MAX + 2];

    h->heap[1] = 0;
    for (i = 0; i < nsym; i++) {
        len[i] = 0;
        if (w[i])
            h->heap[++size] = (int16_t)i;
    }
    if (size < 2) {
        code[h->heap[1]] = 0;
        return h->heap[1];
    }
    for (i = size / 2; i >= 1; i--)
        sift_down(h->heap, size, i, w);
    do {
        int a = h->heap[1], b;
        if (a < nsym)
            h->order[nord++] = (uint16_t)a;
        h->heap[1] = h->heap[size--];
        sift_down(h->heap, size, 1, w);
        b = h->heap[1];
        if (b < nsym)
            h->order[nord++] = (uint16_t)b;
        root = next++;
        w[root] = (uint16_t)(w[a] + w[b]);
        h->lo[root] = (uint16_t)a;
        h->hi[root] = (uint16_t)b;
        h->heap[1] = (int16_t)root;
        sift_down(h->heap, size, 1, w);
    } while (size > 1);

    /* Leaves per depth, deeper than LEN_MAX counted at LEN_MAX. */
    memset(h->at_len, 0, sizeof h->at_len);
    sp = 0;
    h->stack[sp++] = root;
    h->stack[sp++] = 0;
    while (sp > 0) {
        int d = h->stack[--sp], x = h->stack[--sp];
        if (x < nsym) {
            h->at_len[d < LEN_MAX ? d : LEN_MAX]++;
        } else {
            h->stack[sp++] = h->lo[x];
            h->stack[sp++] = d + 1;
            h->stack[sp++] = h->hi[x];
            h->stack[sp++] = d + 1;
        }
    }
    /* The capping overfills the code space by `kraft - 2^16` units of 2^-16: each round
       drops one 16-bit leaf and moves a leaf from the deepest shorter level one level
       down, which frees exactly one unit. */
    kraft = 0;
    for (l = 1; l <= LEN_MAX; l++)
        kraft += (uint32_t)h->at_len[l] << (LEN_MAX - l);
    while (kraft != (1u << LEN_MAX)) {
        h->at_len[LEN_MAX]--;
        for (l = LEN_MAX - 1; l > 0; l--) {
            if (h->at_len[l]) {
                h->at_len[l]--;
                h->at_len[l + 1] += 2;
                break;
            }
        }
        kraft--;
    }
    /* Rarest leaves get the longest codes. */
    i = 0;
    for (l = LEN_MAX; l > 0; l--) {
        int k;
        for (k = 0; k < h->at_len[l]; k++)
            len[h->order[i++]] = (uint8_t)l;
    }
    /* Canonical codes: shorter codes first, symbol order within a length. */
    start[1] = 0;
    for (l = 1; l <= LEN_MAX; l++)
        start[l + 1] = (start[l] + h->at_len[l]) << 1;
    for (i = 0; i < nsym; i++)
        if (len[i])
            code[i] = (uint16_t)start[len[i]]++;
    return root;
}

/* ------------------------------------------------------------------------------------
 * Encoder.
 * ------------------------------------------------------------------------------------ */

struct encoder {
    struct trie trie;
    struct huff huff;
    struct sink out;
    uint16_t sym[STAGE_ITEMS], dist[STAGE_ITEMS];
    int nitems, stage_bytes, in_group;
    uint16_t cfreq[2 * NC], pfreq[2 * NP], tfreq[2 * NT];
    uint8_t clen[NC], ptlen[NT];
    uint16_t ccode[NC], ptcode[NT];
    unsigned long long blocks, fixups;
};

static int bit_length(unsigned v)
{
    int n = 0;
    while (v) {
        v >>= 1;
        n++;
    }
    return n;
}

/* Lengths of the position or extra table: 3 bits, or 7+ as 111 then unary. */
static void put_lengths(struct sink *k, const uint8_t *len, int nsym, int nbits, int gap_after)
{
    int n = nsym, i = 0;
    while (n > 0 && len[n - 1] == 0)
        n--;
    put(k, nbits, (uint32_t)n);
    while (i < n) {
        int l = len[i++];
        if (l <= 6)
            put(k, 3, (uint32_t)l);
        else
            put(k, l - 3, (1u << (l - 3)) - 2);
        if (i == gap_after) {
            int j = i;
            while (j < 6 && len[j] == 0)
                j++;
            put(k, 2, (uint32_t)(j - i));
            i = j;
        }
    }
}

static int used_charlen(const struct encoder *e)
{
    int n = NC;
    while (n > 0 && e->clen[n - 1] == 0)
        n--;
    return n;
}

/* Walk the char/length lengths as the extra alphabet sees them: either count symbol
   use (emit == 0) or write them out. */
static void walk_charlen(struct encoder *e, int emit)
{
    int n = used_charlen(e), i = 0;
    struct sink *k = &e->out;
#define T_SYM(s)                                                 \
    do {                                                         \
        if (emit)                                                \
            put(k, e->ptlen[(s)], e->ptcode[(s)]);               \
        else                                                     \
            e->tfreq[(s)]++;                                     \
    } while (0)
    if (emit)
        put(k, C_NBITS, (uint32_t)n);
    while (i < n) {
        int run = 0;
        if (e->clen[i]) {
            T_SYM(e->clen[i] + 2);
            i++;
            continue;
        }
        while (i < n && e->clen[i] == 0) {
            i++;
            run++;
        }
        if (run <= 2) {
            while (run-- > 0)
                T_SYM(0);
        } else if (run <= 18) {
            T_SYM(1);
            if (emit)
                put(k, 4, (uint32_t)(run - 3));
        } else if (run == 19) {
            T_SYM(0);
            T_SYM(1);
            if (emit)
                put(k, 4, 15);
        } else {
            T_SYM(2);
            if (emit)
                put(k, C_NBITS, (uint32_t)(run - 20));
        }
    }
#undef T_SYM
}

static void send_block(struct encoder *e)
{
    struct sink *k = &e->out;
    int croot, proot, i;

    croot = build_code(&e->huff, NC, e->cfreq, e->clen, e->ccode);
    put(k, 16, (uint32_t)e->nitems);
    if (croot >= NC) {
        int troot;
        memset(e->tfreq, 0, sizeof e->tfreq);
        walk_charlen(e, 0);
        troot = build_code(&e->huff, NT, e->tfreq, e->ptlen, e->ptcode);
        if (troot >= NT) {
            put_lengths(k, e->ptlen, NT, T_NBITS, 3);
        } else {
            put(k, T_NBITS, 0);
            put(k, T_NBITS, (uint32_t)troot);
        }
        walk_charlen(e, 1);
    } else {
        put(k, T_NBITS, 0);
        put(k, T_NBITS, 0);
        put(k, C_NBITS, 0);
        put(k, C_NBITS, (uint32_t)croot);
    }
    proot = build_code(&e->huff, NP, e->pfreq, e->ptlen, e->ptcode);
    if (proot >= NP) {
        put_lengths(k, e->ptlen, NP, P_NBITS, -1);
    } else {
        put(k, P_NBITS, 0);
        put(k, P_NBITS, (uint32_t)proot);
    }
    for (i = 0; i < e->nitems; i++) {
        unsigned c = e->sym[i];
        put(k, e->clen[c], e->ccode[c]);
        if (c >= 256) {
            unsigned d = e->dist[i];
            int cls = bit_length(d);
            put(k, e->ptlen[cls], e->ptcode[cls]);
            if (cls > 1)
                put(k, cls - 1, d & ((1u << (cls - 1)) - 1));
        }
    }
    memset(e->cfreq, 0, sizeof e->cfreq);
    memset(e->pfreq, 0, sizeof e->pfreq);
    e->nitems = 0;
    e->blocks++;
}

/* Stage one literal (c < 256) or copy (c = 253 + length, d = distance - 1). A block
   closes when a new group of eight would start with the staging budget nearly spent. */
static void stage(struct encoder *e, unsigned c, unsigned d)
{
    if (e->in_group == 0) {
        if (e->stage_bytes >= STAGE_BYTES - 24) {
            send_block(e);
            e->stage_bytes = 0;
        }
        e->stage_bytes++;
    }
    e->in_group = (e->in_group + 1) & 7;
    e->sym[e->nitems] = (uint16_t)c;
    e->dist[e->nitems] = (uint16_t)d;
    e->nitems++;
    e->cfreq[c]++;
    if (c >= 256) {
        e->stage_bytes += 3;
        e->pfreq[bit_length(d)]++;
    } else {
        e->stage_bytes += 1;
    }
}

/*
 * The bytes past the end of the input that the match finder compares against, as the
 * reference encoder's two-window buffer holds them: the input byte a whole number of
 * windows earlier, or zero where that buffer never held input.  They decide nothing
 * about lengths (matches are cut at the end of input) but do pick between equally long
 * candidates near the end.
 */
static uint8_t beyond_end(const uint8_t *src, size_t n, size_t p)
{
    while (p >= n) {
        if (p < (size_t)WIN + MATCH_MAX)
            return 0;
        p -= WIN;
    }
    return src[p];
}

static void advance(struct encoder *e)
{
    e->trie.pos++;
    trie_drop_oldest(&e->trie);
    trie_add(&e->trie);
}

static void clamp_match(struct trie *t, int32_t n)
{
    if (t->mlen > n - t->pos)
        t->mlen = n - t->pos;
}

int efic_compress(const uint8_t *src, size_t n, uint8_t **out, size_t *out_len,
                  struct efic_stats *stats)
{
    struct encoder *e;
    struct trie *t;
    uint8_t *store;
    const uint8_t *text;
    size_t i;
    int32_t total;
    int rc = EFIC_OK;

    *out = NULL;
    *out_len = 0;
    if (n > EFIC_MAX_INPUT)
        return EFIC_ETOOBIG;
    e = calloc(1, sizeof *e);
    store = malloc((size_t)WIN + n + MATCH_MAX + 16);
    if (!e || !store) {
        free(e);
        free(store);
        return EFIC_ENOMEM;
    }
    memset(store, 0, WIN);
    if (n)
        memcpy(store + WIN, src, n);
    for (i = n; i < n + MATCH_MAX + 16; i++)
        store[WIN + i] = beyond_end(src, n, i);
    text = store + WIN;
    total = (int32_t)n;

    t = &e->trie;
    trie_init(t, text);
    for (i = 0; i < 8; i++)
        sink_byte(&e->out, 0); /* header, filled in at the end */

    trie_add(t);
    clamp_match(t, total);
    while (t->pos < total && !t->broken) {
        int32_t last_len = t->mlen, last_pos = t->mpos, at = t->pos;
        advance(e);
        clamp_match(t, total);
        if (t->mlen > last_len || last_len < MATCH_MIN) {
            stage(e, text[at], 0);
            continue;
        }
        /* The trie's bookkeeping promises this; check it, so that a lapse costs
           compression, never correctness. */
        if (last_pos < 0 || at - last_pos > WIN || at - last_pos < 1 ||
            memcmp(text + at, text + last_pos, (size_t)last_len) != 0) {
            e->fixups++;
            stage(e, text[at], 0);
            continue;
        }
        stage(e, (unsigned)(last_len + 256 - MATCH_MIN), (unsigned)(at - last_pos - 1) & WIN_MASK);
        while (--last_len > 0)
            advance(e);
        clamp_match(t, total);
    }
    if (t->broken) {
        rc = EFIC_EINTERNAL;
        goto done;
    }
    send_block(e);
    sink_flush(&e->out);
    sink_byte(&e->out, 0);
    if (e->out.failed) {
        rc = EFIC_ENOMEM;
        goto done;
    }
    {
        uint32_t comp = (uint32_t)(e->out.len - 8), orig = (uint32_t)n;
        for (i = 0; i < 4; i++) {
            e->out.buf[i] = (uint8_t)(comp >> (8 * i));
            e->out.buf[4 + i] = (uint8_t)(orig >> (8 * i));
        }
    }
    *out = e->out.buf;
    *out_len = e->out.len;
    e->out.buf = NULL;
    if (stats) {
        stats->blocks = e->blocks;
        stats->fixups = e->fixups;
    }
done:
    free(e->out.buf);
    free(e);
    free(store);
    return rc;
}

/* ------------------------------------------------------------------------------------
 * Decoder.
 * ------------------------------------------------------------------------------------ */

struct bits {
    const uint8_t *p, *end;
    uint64_t acc;     /* unread bits, most significant first; zero past `have` */
    int have;
    long long taken;
};

static void refill(struct bits *b)
{
    while (b->have <= 56 && b->p < b->end) {
        b->acc |= (uint64_t)*b->p++ << (56 - b->have);
        b->have += 8;
    }
}

struct decoder {
    struct bits in;
    struct efic_fault *fault;
    int table;
    long long block;
};

static int fail(struct decoder *d, int code, long long a, long long b)
{
    d->fault->table = d->table;
    d->fault->block = d->block;
    d->fault->bit = d->in.taken;
    d->fault->a = a;
    d->fault->b = b;
    return code;
}

/* Take n (0..16) bits into *v. */
static int take(struct decoder *d, int n, unsigned *v)
{
    struct bits *b = &d->in;
    if (n == 0) {
        *v = 0;
        return EFIC_OK;
    }
    if (b->have < n)
        refill(b);
    if (b->have < n)
        return fail(d, EFIC_EBITS, n, b->have);
    *v = (unsigned)(b->acc >> (64 - n));
    b->acc <<= n;
    b->have -= n;
    b->taken += n;
    return EFIC_OK;
}

/* A canonical prefix code read from its lengths. */
struct code {
    int single;                 /* the one symbol of a count-0 table, else -1 */
    uint16_t count[LEN_MAX + 1];
    uint32_t first[LEN_MAX + 2];
    uint16_t base[LEN_MAX + 1];
    uint16_t syms[NC];
};

static int code_from_lengths(struct decoder *d, struct code *c, const uint8_t *len, int nsym)
{
    uint32_t kraft = 0, at = 0;
    uint16_t fill[LEN_MAX + 1];
    int i, l;

    c->single = -1;
    memset(c->count, 0, sizeof c->count);
    for (i = 0; i < nsym; i++)
        c->count[len[i]]++;
    for (l = 1; l <= LEN_MAX; l++)
        kraft += (uint32_t)c->count[l] << (LEN_MAX - l);
    if (kraft < (1u << LEN_MAX))
        return fail(d, EFIC_EINCOMPLETE, kraft, 1u << LEN_MAX);
    if (kraft > (1u << LEN_MAX))
        return fail(d, EFIC_EOVERFULL, kraft, 1u << LEN_MAX);
    c->first[1] = 0;
    for (l = 1; l <= LEN_MAX; l++) {
        c->first[l + 1] = (c->first[l] + c->count[l]) << 1;
        c->base[l] = (uint16_t)at;
        fill[l] = (uint16_t)at;
        at += c->count[l];
    }
    for (i = 0; i < nsym; i++)
        if (len[i])
            c->syms[fill[len[i]]++] = (uint16_t)i;
    return EFIC_OK;
}

static int read_symbol(struct decoder *d, const struct code *c, unsigned *sym)
{
    struct bits *b = &d->in;
    uint32_t window;
    int l;

    if (c->single >= 0) {
        *sym = (unsigned)c->single;
        return EFIC_OK;
    }
    if (b->have < LEN_MAX)
        refill(b);
    window = (uint32_t)(b->acc >> (64 - LEN_MAX));
    for (l = 1; l <= LEN_MAX; l++) {
        uint32_t v = (window >> (LEN_MAX - l)) - c->first[l];
        if (v < c->count[l]) {
            unsigned dummy;
            *sym = c->syms[c->base[l] + v];
            return take(d, l, &dummy);
        }
    }
    /* A complete code always ends within LEN_MAX bits. */
    return fail(d, EFIC_EINCOMPLETE, 0, 0);
}

/* The extra or position table: 3-bit lengths, 7 and above continued in unary. */
static int read_small_table(struct decoder *d, struct code *c, int nsym, int nbits, int gap_after)
{
    uint8_t len[NT];
    unsigned n, v;
    int i = 0, rc;

    if ((rc = take(d, nbits, &n)))
        return rc;
    if (n == 0) {
        if ((rc = take(d, nbits, &v)))
            return rc;
        if (v >= (unsigned)nsym)
            return fail(d, EFIC_ESYMBOL, v, nsym);
        c->single = (int)v;
        return EFIC_OK;
    }
    if (n > (unsigned)nsym)
        return fail(d, EFIC_ECOUNT, n, nsym);
    memset(len, 0, sizeof len);
    while (i < (int)n) {
        unsigned l;
        if ((rc = take(d, 3, &l)))
            return rc;
        if (l == 7) {
            for (;;) {
                if ((rc = take(d, 1, &v)))
                    return rc;
                if (!v)
                    break;
                if (++l > LEN_MAX)
                    return fail(d, EFIC_ELENGTH, l, LEN_MAX);
            }
        }
        len[i++] = (uint8_t)l;
        if (i == gap_after) {
            if ((rc = take(d, 2, &v)))
                return rc;
            if (i + (int)v > nsym)
                return fail(d, EFIC_ERUN, i + (int)v, nsym);
            i += (int)v;
        }
    }
    return code_from_lengths(d, c, len, nsym);
}

static int read_charlen_table(struct decoder *d, struct code *c, const struct code *extra)
{
    uint8_t len[NC];
    unsigned n, v, s;
    int i = 0, rc;

    if ((rc = take(d, C_NBITS, &n)))
        return rc;
    if (n == 0) {
        if ((rc = take(d, C_NBITS, &v)))
            return rc;
        if (v >= NC)
            return fail(d, EFIC_ESYMBOL, v, NC);
        c->single = (int)v;
        return EFIC_OK;
    }
    if (n > NC)
        return fail(d, EFIC_ECOUNT, n, NC);
    memset(len, 0, sizeof len);
    while (i < (int)n) {
        if ((rc = read_symbol(d, extra, &s)))
            return rc;
        if (s <= 2) {
            unsigned run = 1;
            if (s == 1) {
                if ((rc = take(d, 4, &v)))
                    return rc;
                run = v + 3;
            } else if (s == 2) {
                if ((rc = take(d, C_NBITS, &v)))
                    return rc;
                run = v + 20;
            }
            if (i + (int)run > (int)n)
                return fail(d, EFIC_ERUN, i + (long long)run, n);
            i += (int)run;
        } else {
            len[i++] = (uint8_t)(s - 2);
        }
    }
    return code_from_lengths(d, c, len, NC);
}

struct tables {
    struct code extra, charlen, pos;
};

int efic_decompress(const uint8_t *src, size_t n, size_t max_out, uint8_t **out,
                    size_t *out_len, struct efic_fault *fault)
{
    struct decoder d;
    struct tables *tb = NULL;
    uint8_t *buf = NULL;
    size_t comp, orig, have = 0, cap;
    unsigned block_left = 0;
    int rc = EFIC_OK;

    *out = NULL;
    *out_len = 0;
    memset(fault, 0, sizeof *fault);
    memset(&d, 0, sizeof d);
    d.fault = fault;
    if (n < 8)
        return fail(&d, EFIC_ESHORT, (long long)n, 8);
    comp = (size_t)src[0] | (size_t)src[1] << 8 | (size_t)src[2] << 16 | (size_t)src[3] << 24;
    orig = (size_t)src[4] | (size_t)src[5] << 8 | (size_t)src[6] << 16 | (size_t)src[7] << 24;
    if (comp > n - 8)
        return fail(&d, EFIC_ECOMPSIZE, (long long)comp, (long long)(n - 8));
    if (orig > max_out)
        return fail(&d, EFIC_EORIGSIZE, (long long)orig, (long long)max_out);
    d.in.p = src + 8;
    d.in.end = src + 8 + comp;

    /* Grow the output as it is produced rather than trusting the header's size. */
    cap = orig < 65536 ? orig : 65536;
    buf = malloc(cap ? cap : 1);
    tb = malloc(sizeof *tb);
    if (!buf || !tb) {
        rc = EFIC_ENOMEM;
        goto done;
    }

    while (have < orig) {
        unsigned c;
        if (block_left == 0) {
            d.block++;
            d.table = EFIC_TABLE_NONE;
            if ((rc = take(&d, 16, &block_left)))
                goto done;
            if (block_left == 0) {
                rc = fail(&d, EFIC_EBLOCK, 0, 0);
                goto done;
            }
            d.table = EFIC_TABLE_EXTRA;
            if ((rc = read_small_table(&d, &tb->extra, NT, T_NBITS, 3)))
                goto done;
            d.table = EFIC_TABLE_CHARLEN;
            if ((rc = read_charlen_table(&d, &tb->charlen, &tb->extra)))
                goto done;
            d.table = EFIC_TABLE_POS;
            if ((rc = read_small_table(&d, &tb->pos, NP, P_NBITS, -1)))
                goto done;
            d.table = EFIC_TABLE_NONE;
        }
        block_left--;
        if ((rc = read_symbol(&d, &tb->charlen, &c)))
            goto done;
        if (c < 256) {
            if (have == cap) {
                size_t ncap = cap * 2 < orig ? cap * 2 : orig;
                uint8_t *nb = realloc(buf, ncap);
                if (!nb) {
                    rc = EFIC_ENOMEM;
                    goto done;
                }
                buf = nb;
                cap = ncap;
            }
            buf[have++] = (uint8_t)c;
        } else {
            size_t length = c - (256 - MATCH_MIN), dist, from, k;
            unsigned cls, extra;
            if ((rc = read_symbol(&d, &tb->pos, &cls)))
                goto done;
            dist = cls;
            if (cls > 1) {
                if ((rc = take(&d, (int)cls - 1, &extra)))
                    goto done;
                dist = ((size_t)1 << (cls - 1)) + extra;
            }
            dist += 1;
            if (dist > have) {
                rc = fail(&d, EFIC_EDISTANCE, (long long)dist, (long long)have);
                goto done;
            }
            if (length > orig - have) {
                rc = fail(&d, EFIC_EOVERRUN, (long long)length, (long long)(orig - have));
                goto done;
            }
            while (have + length > cap) {
                size_t ncap = cap * 2 < orig ? cap * 2 : orig;
                uint8_t *nb = realloc(buf, ncap);
                if (!nb) {
                    rc = EFIC_ENOMEM;
                    goto done;
                }
                buf = nb;
                cap = ncap;
            }
            from = have - dist;
            for (k = 0; k < length; k++)
                buf[have + k] = buf[from + k];
            have += length;
        }
    }
    if (block_left != 0) {
        rc = fail(&d, EFIC_ELEFTOVER, block_left, 0);
        goto done;
    }
    *out = buf;
    *out_len = have;
    buf = NULL;
done:
    free(buf);
    free(tb);
    return rc;
}

void efic_release(void *p)
{
    free(p);
}
