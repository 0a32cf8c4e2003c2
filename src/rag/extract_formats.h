/* The extractors of the formats that need a library; each fills a rag_text or fails with one line. */
#ifndef SLM_RAG_EXTRACT_FORMATS_H
#define SLM_RAG_EXTRACT_FORMATS_H

#include "rag_internal.h"

int rag_extract_html(const char *data, size_t len, size_t max_text, rag_text *out, char *err, size_t err_len);
int rag_extract_pdf(const char *data, size_t len, size_t max_text, rag_text *out, char *err, size_t err_len);
int rag_extract_docx(const char *data, size_t len, size_t max_text, rag_text *out, char *err, size_t err_len);

#endif
