/* RFC 4180 CSV reader for the router's training data (RouteLLM's response files).
 *
 * The whole text is parsed into a table: records separated by CRLF or LF, fields separated by
 * commas; a field starting with '"' is quoted and may hold commas, line breaks and doubled quotes
 * ("" -> "). A UTF-8 byte order mark at the very start is skipped; a final line break is optional.
 * Anything else is refused with one line naming the line number: a quote inside an unquoted field,
 * text after a closing quote, an unterminated quoted field, a bare CR outside quotes, a NUL byte,
 * a record whose field count differs from the first record's (the header), too many fields. */
#ifndef SLM_ROUTER_CSV_H
#define SLM_ROUTER_CSV_H

#include <stddef.h>

#define RT_CSV_MAX_FIELDS 4096          /* fields per record */
#define RT_CSV_MAX_BYTES (512u << 20)   /* whole text */

typedef struct rt_csv {
    size_t rows, cols;   /* rows includes the header (row 0) */
    char **cell;         /* rows * cols NUL-terminated fields, row-major, pointing into text */
    char *text;          /* unescaped field bytes, each followed by a NUL */
    size_t *line;        /* rows: the 1-based physical line each record starts on */
} rt_csv;

/* Parses data[0..len). Returns 0, or -1 with one line in err (and *out empty). A text with no
 * record at all is an error ("empty"). */
int rt_csv_parse(const char *data, size_t len, rt_csv *out, char *err, size_t err_len);
/* Reads a file (bounded by RT_CSV_MAX_BYTES) and parses it; errors name the path. */
int rt_csv_read_file(const char *path, rt_csv *out, char *err, size_t err_len);
void rt_csv_free(rt_csv *t);

static inline const char *rt_csv_get(const rt_csv *t, size_t row, size_t col) { return t->cell[row * t->cols + col]; }

#endif
