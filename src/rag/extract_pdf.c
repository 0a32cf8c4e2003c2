/* PDF → text with poppler-glib, one page after another separated by '\f' (chunks keep their page). */
#include <poppler.h>
#include <string.h>

#include "extract_formats.h"
#include "util/err.h"

int rag_extract_pdf(const char *data, size_t len, size_t max_text, rag_text *out, char *err, size_t err_len) {
    memset(out, 0, sizeof *out);
    /* the header may follow some junk (the specification allows 1024 bytes); anything else is not a PDF */
    const char *hdr = len >= 5 ? memmem(data, len < 1024 ? len : 1024, "%PDF-", 5) : NULL;
    if (!hdr) return slm_err(err, err_len, "not a PDF (no %%PDF- header)");
    GBytes *bytes = g_bytes_new_static(data, len);
    GError *gerr = NULL;
    PopplerDocument *doc = poppler_document_new_from_bytes(bytes, NULL, &gerr);
    if (!doc) {
        slm_err(err, err_len, "unreadable PDF: %s", gerr && gerr->message ? gerr->message : "poppler refused it");
        if (gerr) g_error_free(gerr);
        g_bytes_unref(bytes);
        return -1;
    }
    int n = poppler_document_get_n_pages(doc);
    rag_textbuf b = {.max = max_text};
    for (int i = 0; i < n && !b.over && !b.oom; i++) {
        if (i > 0) rag_textbuf_page(&b);
        PopplerPage *page = poppler_document_get_page(doc, i);
        if (!page) continue;
        char *text = poppler_page_get_text(page);
        if (text) {
            /* poppler ends lines with \n; keep them (paragraphs are blank lines when the layout has them).
             * A form feed inside a page would count as a page break: it becomes a newline. */
            for (char *p = text; (p = strchr(p, '\f'));) *p = '\n';
            rag_textbuf_add(&b, text, strlen(text), false);
            g_free(text);
        }
        g_object_unref(page);
    }
    g_object_unref(doc);
    g_bytes_unref(bytes);
    int rc = rag_textbuf_finish(&b, "PDF", out, err, err_len);
    if (rc == 0) out->n_pages = n > 0 ? n : 1;
    return rc;
}
