/* Placeholder until the library extractors land. */
#include "extract_formats.h"
#include "util/err.h"

int rag_extract_html(const char *data, size_t len, size_t max_text, rag_text *out, char *err, size_t err_len) {
    (void)data, (void)len, (void)max_text, (void)out;
    return slm_err(err, err_len, "html is not supported yet");
}
int rag_extract_pdf(const char *data, size_t len, size_t max_text, rag_text *out, char *err, size_t err_len) {
    (void)data, (void)len, (void)max_text, (void)out;
    return slm_err(err, err_len, "pdf is not supported yet");
}
int rag_extract_docx(const char *data, size_t len, size_t max_text, rag_text *out, char *err, size_t err_len) {
    (void)data, (void)len, (void)max_text, (void)out;
    return slm_err(err, err_len, "docx is not supported yet");
}
