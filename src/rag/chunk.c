/* Chunking: contiguous byte ranges of the extracted text, so a chunk's text is the document's bytes
 * at its offsets (what citations quote). Paragraphs (runs of non-blank lines) are the units; a
 * heading or a page break closes the chunk, a paragraph longer than a chunk is cut at a sentence
 * end (else a space) in the second half of the window. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rag_internal.h"

#define MAX_LEVELS 6
#define HEADING_MAX 200

typedef struct chunker {
    const char *text;
    size_t len;
    size_t target, overlap;
    rag_chunk_span *out;
    int n, cap;
    char heads[MAX_LEVELS][HEADING_MAX + 1];
    int page;
    size_t cur_start, cur_end; /* SIZE_MAX = no open chunk */
    bool oom;
} chunker;

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static char *heading_path(const chunker *k) {
    size_t n = 0;
    for (int i = 0; i < MAX_LEVELS; i++)
        if (k->heads[i][0]) n += strlen(k->heads[i]) + 3;
    char *s = malloc(n + 1), *p = s;
    if (!s) return NULL;
    *p = 0;
    for (int i = 0; i < MAX_LEVELS; i++) {
        if (!k->heads[i][0]) continue;
        if (p != s) p = memcpy(p, " > ", 3), p += 3;
        size_t l = strlen(k->heads[i]);
        memcpy(p, k->heads[i], l);
        p += l;
    }
    *p = 0;
    return s;
}

static void emit(chunker *k, size_t start, size_t end) {
    while (start < end && is_space(k->text[start])) start++;
    while (end > start && is_space(k->text[end - 1])) end--;
    if (start >= end || k->oom) return;
    if (k->n == k->cap) {
        int cap = k->cap ? k->cap * 2 : 16;
        rag_chunk_span *p = realloc(k->out, sizeof *p * (size_t)cap);
        if (!p) {
            k->oom = true;
            return;
        }
        k->out = p;
        k->cap = cap;
    }
    char *h = heading_path(k);
    if (!h) {
        k->oom = true;
        return;
    }
    k->out[k->n++] = (rag_chunk_span){.start = start, .end = end, .page = k->page, .heading = h};
}

static void flush(chunker *k) {
    if (k->cur_start != SIZE_MAX) emit(k, k->cur_start, k->cur_end);
    k->cur_start = k->cur_end = SIZE_MAX;
}

/* Where the next chunk starts when it shares the tail of [start, end): about overlap bytes back,
 * moved forward to the start of a word, never at or before start. */
static size_t overlap_start(const chunker *k, size_t start, size_t end) {
    if (!k->overlap || end - start <= k->overlap) return end;
    size_t p = end - k->overlap;
    while (p < end && !is_space(k->text[p - 1])) p++;
    return p < end ? p : end;
}

/* Adds [s, e) (part of one paragraph, no longer than target) to the open chunk. */
static void add_piece(chunker *k, size_t s, size_t e) {
    if (k->cur_start != SIZE_MAX && e - k->cur_start > k->target) {
        size_t next = overlap_start(k, k->cur_start, k->cur_end), first = k->cur_start;
        /* the overlap must start after the emitted chunk's first word (both are trimmed: a chunk
         * that is mostly blanks would otherwise start where its successor does) */
        while (first < k->cur_end && is_space(k->text[first])) first++;
        if (next <= first) next = s;
        emit(k, k->cur_start, k->cur_end);
        k->cur_start = next < s ? next : s;
    } else if (k->cur_start == SIZE_MAX) {
        k->cur_start = s;
    }
    k->cur_end = e;
}

/* A paragraph: whole when it fits, else cut into pieces at sentence ends or spaces. */
static void add_paragraph(chunker *k, size_t s, size_t e) {
    while (e - s > k->target) {
        size_t lim = s + k->target, cut = 0;
        for (size_t p = lim; p > s + k->target / 2; p--) {
            if ((k->text[p - 1] == '.' || k->text[p - 1] == '?' || k->text[p - 1] == '!') && is_space(k->text[p])) {
                cut = p;
                break;
            }
        }
        for (size_t p = lim; !cut && p > s + k->target / 2; p--)
            if (is_space(k->text[p])) cut = p;
        if (!cut) { /* one long word: cut at a UTF-8 character boundary */
            cut = lim;
            while (cut > s + 1 && ((unsigned char)k->text[cut] & 0xC0) == 0x80) cut--;
        }
        add_piece(k, s, cut);
        s = cut;
    }
    if (e > s) add_piece(k, s, e);
}

/* "## Title ##" → level 2 and the title's range; 0 if the line is not a markdown heading. */
static int heading_level(const char *line, size_t n, size_t *ts, size_t *te) {
    size_t i = 0;
    while (i < n && i < 7 && line[i] == '#') i++;
    if (i == 0 || i > MAX_LEVELS || i >= n || (line[i] != ' ' && line[i] != '\t')) return 0;
    size_t a = i, b = n;
    while (a < b && is_space(line[a])) a++;
    while (b > a && (is_space(line[b - 1]) || line[b - 1] == '#')) b--;
    if (a == b) return 0;
    *ts = a;
    *te = b;
    return (int)i;
}

int rag_chunk(const char *text, size_t len, bool paged, bool headings, int chunk_tokens, int overlap_tokens,
              rag_chunk_span **out) {
    chunker k = {.text = text, .len = len, .page = paged ? 1 : 0, .cur_start = SIZE_MAX, .cur_end = SIZE_MAX};
    k.target = (size_t)(chunk_tokens > 0 ? chunk_tokens : 256) * 4;
    if (k.target < 64) k.target = 64;
    k.overlap = overlap_tokens > 0 ? (size_t)overlap_tokens * 4 : 0;
    if (k.overlap > k.target / 2) k.overlap = k.target / 2;
    size_t para = SIZE_MAX, para_end = 0;
    size_t i = 0;
    while (i <= len) {
        /* one line [i, e) */
        size_t e = i;
        while (e < len && text[e] != '\n' && text[e] != '\f') e++;
        bool blank = true;
        for (size_t p = i; p < e; p++)
            if (!is_space(text[p])) {
                blank = false;
                break;
            }
        size_t ts = 0, te = 0;
        int level = !blank && headings ? heading_level(text + i, e - i, &ts, &te) : 0;
        if (blank || level) {
            if (para != SIZE_MAX) add_paragraph(&k, para, para_end);
            para = SIZE_MAX;
        }
        if (level) {
            flush(&k);
            for (int l = level - 1; l < MAX_LEVELS; l++) k.heads[l][0] = 0;
            size_t n = te - ts < HEADING_MAX ? te - ts : HEADING_MAX;
            while (n > 0 && n < te - ts && ((unsigned char)text[i + ts + n] & 0xC0) == 0x80) n--;
            memcpy(k.heads[level - 1], text + i + ts, n);
            k.heads[level - 1][n] = 0;
            for (size_t p = 0; p < n; p++) /* the path is one line */
                if ((unsigned char)k.heads[level - 1][p] < 0x20) k.heads[level - 1][p] = ' ';
            k.cur_start = i; /* the heading line opens the next chunk */
            k.cur_end = e;
        } else if (!blank) {
            if (para == SIZE_MAX) para = i;
            para_end = e;
        }
        if (e < len && text[e] == '\f') {
            if (para != SIZE_MAX) add_paragraph(&k, para, para_end);
            para = SIZE_MAX;
            flush(&k);
            if (paged) k.page++;
        }
        if (e >= len) break;
        i = e + 1;
    }
    if (para != SIZE_MAX) add_paragraph(&k, para, para_end);
    flush(&k);
    if (k.oom) {
        rag_chunks_free(k.out, k.n);
        *out = NULL;
        return -1;
    }
    *out = k.out;
    return k.n;
}

void rag_chunks_free(rag_chunk_span *c, int n) {
    if (!c) return;
    for (int i = 0; i < n; i++) free(c[i].heading);
    free(c);
}
