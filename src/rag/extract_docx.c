/* docx → text: word/document.xml read out of the zip with libarchive, at most a fixed number of
 * uncompressed bytes (a zip bomb stops there), parsed with libxml2 without entity expansion or
 * network. Paragraphs (w:p) end with a blank line; Heading1..6 and Title styles become markdown
 * headings; w:t is text, w:tab a tab, w:br a line break. */
#include <archive.h>
#include <archive_entry.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "extract_formats.h"
#include "util/err.h"

#define DOCX_MAX_XML ((size_t)64 << 20) /* uncompressed word/document.xml */
#define DOCX_MAX_ENTRIES 100000

static bool is(const xmlNode *n, const char *name) {
    return n->type == XML_ELEMENT_NODE && n->name && strcmp((const char *)n->name, name) == 0;
}

static int heading_level(const xmlNode *p) {
    for (const xmlNode *c = p->children; c; c = c->next) {
        if (!is(c, "pPr")) continue;
        for (const xmlNode *s = c->children; s; s = s->next) {
            if (!is(s, "pStyle")) continue;
            xmlChar *v = xmlGetProp(s, (const xmlChar *)"val");
            int level = 0;
            if (v) {
                const char *t = (const char *)v;
                if (strcasecmp(t, "Title") == 0) level = 1;
                else if (strncasecmp(t, "Heading", 7) == 0 && t[7] >= '1' && t[7] <= '6' && !t[8]) level = t[7] - '0';
                xmlFree(v);
            }
            return level;
        }
    }
    return 0;
}

static void runs(const xmlNode *n, rag_textbuf *b, int depth) {
    for (; n && !b->over && !b->oom; n = n->next) {
        if (n->type != XML_ELEMENT_NODE) continue;
        if (is(n, "t")) {
            xmlChar *s = xmlNodeGetContent(n);
            if (s) rag_textbuf_add(b, (const char *)s, strlen((const char *)s), false);
            xmlFree(s);
        } else if (is(n, "tab")) {
            rag_textbuf_add(b, "\t", 1, false);
        } else if (is(n, "br") || is(n, "cr")) {
            rag_textbuf_break(b, 1);
        } else if (is(n, "p")) { /* a paragraph inside a text box or table cell */
            rag_textbuf_break(b, 2);
            if (depth < 128) runs(n->children, b, depth + 1);
            rag_textbuf_break(b, 2);
        } else if (!is(n, "pPr") && !is(n, "rPr") && !is(n, "instrText") && !is(n, "delText") && depth < 128) {
            runs(n->children, b, depth + 1);
        }
    }
}

static void body(const xmlNode *n, rag_textbuf *b, int depth) {
    for (; n && !b->over && !b->oom; n = n->next) {
        if (n->type != XML_ELEMENT_NODE) continue;
        if (is(n, "p")) {
            int level = heading_level(n);
            rag_textbuf_break(b, 2);
            if (level) {
                static const char hashes[] = "###### ";
                rag_textbuf_add(b, hashes + 6 - level, (size_t)level + 1, false);
                rag_textbuf b2 = {.max = 4096}; /* a heading is one line */
                runs(n->children, &b2, depth + 1);
                rag_textbuf_add(b, b2.d ? b2.d : "", b2.n, true);
                free(b2.d);
            } else {
                runs(n->children, b, depth + 1);
            }
            rag_textbuf_break(b, 2);
        } else if (depth < 128) {
            body(n->children, b, depth + 1);
        }
    }
}

int rag_extract_docx(const char *data, size_t len, size_t max_text, rag_text *out, char *err, size_t err_len) {
    memset(out, 0, sizeof *out);
    if (len < 4 || memcmp(data, "PK\3\4", 4) != 0) return slm_err(err, err_len, "not a docx (not a zip archive)");
    struct archive *a = archive_read_new();
    if (!a) return slm_err(err, err_len, "out of memory");
    archive_read_support_format_zip(a);
    if (archive_read_open_memory(a, data, len) != ARCHIVE_OK) {
        slm_err(err, err_len, "not a docx: %s", archive_error_string(a) ? archive_error_string(a) : "unreadable zip");
        archive_read_free(a);
        return -1;
    }
    struct archive_entry *e;
    char *xml = NULL;
    size_t n = 0;
    int rc = -1, entries = 0;
    bool found = false;
    slm_err(err, err_len, "not a docx (no word/document.xml)");
    while (!found && entries++ < DOCX_MAX_ENTRIES) {
        int h = archive_read_next_header(a, &e);
        if (h == ARCHIVE_EOF) break;
        if (h != ARCHIVE_OK && h != ARCHIVE_WARN) {
            slm_err(err, err_len, "broken docx: %s", archive_error_string(a) ? archive_error_string(a) : "bad zip entry");
            break;
        }
        const char *name = archive_entry_pathname(e);
        if (!name || strcmp(name, "word/document.xml") != 0) continue;
        found = true;
        size_t cap = 1 << 16;
        xml = malloc(cap);
        for (;;) {
            if (!xml) {
                slm_err(err, err_len, "out of memory");
                break;
            }
            if (n == cap) {
                if (cap >= DOCX_MAX_XML) {
                    slm_err(err, err_len, "word/document.xml expands beyond %zu MiB (a zip bomb?)", DOCX_MAX_XML >> 20);
                    break;
                }
                char *p = realloc(xml, cap * 2);
                if (!p) {
                    free(xml);
                    xml = NULL;
                    continue;
                }
                xml = p;
                cap *= 2;
            }
            la_ssize_t k = archive_read_data(a, xml + n, cap - n);
            if (k < 0) {
                slm_err(err, err_len, "broken docx: %s", archive_error_string(a) ? archive_error_string(a) : "unreadable data");
                break;
            }
            if (k == 0) {
                rc = 0;
                break;
            }
            n += (size_t)k;
        }
    }
    archive_read_free(a);
    if (rc != 0 || n > (size_t)INT32_MAX) {
        free(xml);
        return -1;
    }
    xmlInitParser();
    xmlDocPtr doc = xmlReadMemory(xml, (int)n, "document.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    free(xml);
    if (!doc) return slm_err(err, err_len, "broken docx: word/document.xml is not well-formed XML");
    rag_textbuf b = {.max = max_text};
    body(xmlDocGetRootElement(doc), &b, 0);
    xmlFreeDoc(doc);
    return rag_textbuf_finish(&b, "docx", out, err, err_len);
}
