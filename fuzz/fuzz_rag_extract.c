/* libFuzzer target for the retrieval extractors: the first byte picks the format (txt, md, html,
 * pdf, docx), the rest is the file. Extraction either fails with one line or gives valid UTF-8
 * within the text limit; chunking that text gives trimmed, in-bounds, ordered chunks whose pages
 * exist; nothing leaks. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rag/rag_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const formats[] = {"txt", "md", "html", "pdf", "docx"};
    if (size < 1) return 0;
    const char *format = formats[data[0] % 5];
    const size_t max_text = 1 << 20;
    rag_text t;
    char err[512];
    err[0] = 0;
    if (rag_extract(format, data + 1, size - 1, max_text, &t, err, sizeof err) != 0) {
        assert(err[0] && !strchr(err, '\n'));
        assert(t.data == NULL);
        return 0;
    }
    assert(t.data && t.len <= max_text && t.data[t.len] == 0);
    assert(rag_text_plausible(t.data, t.len));
    int pages = 1;
    for (size_t i = 0; i < t.len; i++) pages += t.data[i] == '\f';
    if (t.n_pages > 0) assert(pages == t.n_pages);
    rag_chunk_span *c;
    int tokens = 16 + (data[0] >> 3); /* small chunks exercise the cutting */
    int n = rag_chunk(t.data, t.len, t.n_pages > 0, data[0] % 5 != 0, tokens, (data[0] >> 4) % 8, &c);
    assert(n >= 0);
    for (int i = 0; i < n; i++) {
        assert(c[i].start < c[i].end && c[i].end <= t.len);
        assert(t.data[c[i].start] != ' ' && t.data[c[i].end - 1] != '\n');
        assert(!i || c[i].start > c[i - 1].start);
        assert(c[i].page == 0 || (c[i].page >= 1 && c[i].page <= pages));
        assert(c[i].heading && !strchr(c[i].heading, '\n'));
    }
    rag_chunks_free(c, n);
    rag_text_free(&t);
    return 0;
}
