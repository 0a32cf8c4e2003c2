/* The extractors of the formats that need a library; each fills a rag_text or fails with one line. */
#ifndef SLM_RAG_EXTRACT_FORMATS_H
#define SLM_RAG_EXTRACT_FORMATS_H

#include "rag_internal.h"

int rag_extract_html(const char *data, size_t len, size_t max_text, rag_text *out, char *err, size_t err_len);
int rag_extract_pdf(const char *data, size_t len, size_t max_text, rag_text *out, char *err, size_t err_len);
int rag_extract_docx(const char *data, size_t len, size_t max_text, rag_text *out, char *err, size_t err_len);

/* The output of an extractor: text with paragraph breaks collapsed, capped at `max` bytes. */
typedef struct rag_textbuf {
    char *d;
    size_t n, cap, max;
    bool over;         /* more than max bytes were offered */
    bool oom;
    bool space;        /* a collapsed space is pending */
    int breaks;        /* newlines pending (at most 2) */
} rag_textbuf;

/* Appends text; collapse: runs of whitespace become one space (HTML flow text). */
void rag_textbuf_add(rag_textbuf *b, const char *s, size_t len, bool collapse);
/* Ends the current line (1) or paragraph (2); nothing at the start of the text. */
void rag_textbuf_break(rag_textbuf *b, int newlines);
/* A page break ('\f'), even on an empty page. */
void rag_textbuf_page(rag_textbuf *b);
/* Moves the text into out (validated: control characters other than \t \n \f become spaces,
 * invalid UTF-8 is an error). `what` names the format in errors. */
int rag_textbuf_finish(rag_textbuf *b, const char *what, rag_text *out, char *err, size_t err_len);

#endif
