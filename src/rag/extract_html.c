/* HTML → text with libxml2's HTML parser (forgiving, no network): script, style and the like are
 * dropped, block elements end paragraphs, h1-h6 become markdown headings for the heading path,
 * <pre> keeps its whitespace. */
#include <libxml/HTMLparser.h>
#include <libxml/tree.h>
#include <string.h>
#include <strings.h>

#include "extract_formats.h"
#include "util/err.h"

static bool named(const xmlNode *n, const char *const *names) {
    for (; *names; names++)
        if (strcasecmp((const char *)n->name, *names) == 0) return true;
    return false;
}

static const char *const dropped[] = {"script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object", "canvas", NULL};
static const char *const blocks[] = {"p", "div", "section", "article", "main", "aside", "header", "footer", "nav", "ul", "ol",
                                     "li", "dl", "dt", "dd", "table", "tr", "blockquote", "figure", "figcaption", "form",
                                     "fieldset", "address", "hr", "title", "body", "caption", "details", "summary", NULL};

static void walk(const xmlNode *n, rag_textbuf *b, int depth, bool pre) {
    for (; n && !b->over && !b->oom; n = n->next) {
        if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
            if (n->content) rag_textbuf_add(b, (const char *)n->content, strlen((const char *)n->content), !pre);
            continue;
        }
        if (n->type != XML_ELEMENT_NODE || !n->name) continue;
        if (named(n, dropped)) continue;
        const char *name = (const char *)n->name;
        if (strcasecmp(name, "br") == 0) {
            rag_textbuf_break(b, 1);
            continue;
        }
        int level = (name[0] == 'h' || name[0] == 'H') && name[1] >= '1' && name[1] <= '6' && !name[2] ? name[1] - '0' : 0;
        bool block = level || named(n, blocks) || strcasecmp(name, "pre") == 0;
        if (block) rag_textbuf_break(b, 2);
        if (level) {
            static const char hashes[] = "###### ";
            rag_textbuf_add(b, hashes + 6 - level, (size_t)level + 1, false);
        }
        if (strcasecmp(name, "td") == 0 || strcasecmp(name, "th") == 0) rag_textbuf_add(b, " ", 1, true);
        if (depth < 256) walk(n->children, b, depth + 1, pre || strcasecmp(name, "pre") == 0);
        /* a heading is one line: its own newlines were collapsed, and a paragraph follows */
        if (block) rag_textbuf_break(b, 2);
    }
}

int rag_extract_html(const char *data, size_t len, size_t max_text, rag_text *out, char *err, size_t err_len) {
    memset(out, 0, sizeof *out);
    if (len > (size_t)INT32_MAX) return slm_err(err, err_len, "HTML larger than 2 GiB");
    for (size_t i = 0; i < len && i < 4096; i++)
        if (data[i] == 0) return slm_err(err, err_len, "binary data, not HTML");
    xmlInitParser();
    htmlDocPtr doc = htmlReadMemory(data, (int)len, NULL, NULL,
                                    HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET |
                                        HTML_PARSE_NOIMPLIED | HTML_PARSE_COMPACT);
    if (!doc) return slm_err(err, err_len, "not parseable as HTML");
    rag_textbuf b = {.max = max_text};
    /* the title (in head, which is otherwise dropped) heads the text */
    xmlNode *root = xmlDocGetRootElement(doc);
    for (xmlNode *h = root ? root->children : NULL; h; h = h->next)
        if (h->type == XML_ELEMENT_NODE && strcasecmp((const char *)h->name, "head") == 0)
            for (xmlNode *t = h->children; t; t = t->next)
                if (t->type == XML_ELEMENT_NODE && strcasecmp((const char *)t->name, "title") == 0) {
                    xmlChar *s = xmlNodeGetContent(t);
                    if (s && *s) {
                        rag_textbuf_add(&b, "# ", 2, false);
                        rag_textbuf_add(&b, (const char *)s, strlen((const char *)s), true);
                        rag_textbuf_break(&b, 2);
                    }
                    xmlFree(s);
                }
    walk(doc->children, &b, 0, false);
    xmlFreeDoc(doc);
    return rag_textbuf_finish(&b, "HTML", out, err, err_len);
}
