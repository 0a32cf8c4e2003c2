#include "router/csv.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/buf.h"
#include "util/err.h"

typedef struct csv_builder {
    char *text;
    size_t text_len, text_cap;
    size_t *field_off; /* offset of each field in text */
    size_t nfields, fields_cap;
    size_t *line;
    size_t nrows, rows_cap;
} csv_builder;

static bool put_byte(csv_builder *b, char c) {
    if (b->text_len == b->text_cap && !slm_grow((void **)&b->text, &b->text_cap, b->text_len + 1, 1, 4096)) return false;
    b->text[b->text_len++] = c;
    return true;
}

static void builder_free(csv_builder *b) {
    free(b->text);
    free(b->field_off);
    free(b->line);
    *b = (csv_builder){0};
}

int rt_csv_parse(const char *data, size_t len, rt_csv *out, char *err, size_t err_len) {
    *out = (rt_csv){0};
    if (len > RT_CSV_MAX_BYTES)
        return slm_err(err, err_len, "CSV text is %zu bytes, more than the limit of %u", len, (unsigned)RT_CSV_MAX_BYTES);
    size_t pos = 0;
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) pos = 3; /* UTF-8 byte order mark */
    if (pos == len) return slm_err(err, err_len, "empty CSV (no header)");
    csv_builder b = {0};
    if (!slm_grow((void **)&b.text, &b.text_cap, len + 64, 1, 4096)) goto oom;
    size_t line = 1, cols = 0;
    while (pos < len) {
        size_t rec_line = line, nf = 0;
        bool end_of_record = false;
        while (!end_of_record) {
            if (nf == RT_CSV_MAX_FIELDS) {
                builder_free(&b);
                return slm_err(err, err_len, "line %zu: more than %d fields in a record", rec_line, RT_CSV_MAX_FIELDS);
            }
            if (!slm_grow((void **)&b.field_off, &b.fields_cap, b.nfields + 1, sizeof *b.field_off, 256)) goto oom;
            b.field_off[b.nfields++] = b.text_len;
            nf++;
            if (pos < len && data[pos] == '"') {
                size_t quote_line = line;
                pos++;
                for (;;) {
                    if (pos >= len) {
                        builder_free(&b);
                        return slm_err(err, err_len, "line %zu: quoted field never closed (end of file)", quote_line);
                    }
                    char c = data[pos];
                    if (c == '"') {
                        if (pos + 1 < len && data[pos + 1] == '"') {
                            if (!put_byte(&b, '"')) goto oom;
                            pos += 2;
                            continue;
                        }
                        pos++;
                        break;
                    }
                    if (c == 0) {
                        builder_free(&b);
                        return slm_err(err, err_len, "line %zu: NUL byte in a field", line);
                    }
                    if (c == '\n') line++;
                    if (!put_byte(&b, c)) goto oom;
                    pos++;
                }
                if (pos < len && data[pos] != ',' && data[pos] != '\n' && !(data[pos] == '\r' && pos + 1 < len && data[pos + 1] == '\n')) {
                    builder_free(&b);
                    return slm_err(err, err_len, "line %zu: unexpected character after a closing quote (a quote inside a "
                                                 "quoted field must be doubled)", line);
                }
            } else {
                while (pos < len) {
                    char c = data[pos];
                    if (c == ',' || c == '\n') break;
                    if (c == '\r') {
                        if (pos + 1 < len && data[pos + 1] == '\n') break;
                        builder_free(&b);
                        return slm_err(err, err_len, "line %zu: bare CR (line breaks are LF or CRLF)", line);
                    }
                    if (c == '"') {
                        builder_free(&b);
                        return slm_err(err, err_len, "line %zu: quote inside an unquoted field (quote the whole field)", line);
                    }
                    if (c == 0) {
                        builder_free(&b);
                        return slm_err(err, err_len, "line %zu: NUL byte in a field", line);
                    }
                    if (!put_byte(&b, c)) goto oom;
                    pos++;
                }
            }
            if (!put_byte(&b, 0)) goto oom;
            if (pos >= len) {
                end_of_record = true;
            } else if (data[pos] == ',') {
                pos++;
                if (pos == len) { /* "a,b," at the end: the record ends with an empty field */
                    if (!slm_grow((void **)&b.field_off, &b.fields_cap, b.nfields + 1, sizeof *b.field_off, 256)) goto oom;
                    b.field_off[b.nfields++] = b.text_len;
                    nf++;
                    if (!put_byte(&b, 0)) goto oom;
                    end_of_record = true;
                }
            } else { /* LF or CRLF */
                pos += data[pos] == '\r' ? 2 : 1;
                line++;
                end_of_record = true;
            }
        }
        if (b.nrows == 0) {
            cols = nf;
        } else if (nf != cols) {
            builder_free(&b);
            return slm_err(err, err_len, "line %zu: %zu field%s, the header has %zu", rec_line, nf, nf == 1 ? "" : "s", cols);
        }
        if (!slm_grow((void **)&b.line, &b.rows_cap, b.nrows + 1, sizeof *b.line, 64)) goto oom;
        b.line[b.nrows++] = rec_line;
    }
    out->cell = malloc(b.nfields * sizeof *out->cell);
    if (!out->cell) goto oom;
    for (size_t i = 0; i < b.nfields; i++) out->cell[i] = b.text + b.field_off[i];
    out->rows = b.nrows;
    out->cols = cols;
    out->text = b.text;
    out->line = b.line;
    free(b.field_off);
    return 0;
oom:
    builder_free(&b);
    *out = (rt_csv){0};
    return slm_err(err, err_len, "out of memory reading CSV");
}

int rt_csv_read_file(const char *path, rt_csv *out, char *err, size_t err_len) {
    *out = (rt_csv){0};
    FILE *f = fopen(path, "rb");
    if (!f) return slm_err(err, err_len, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return slm_err(err, err_len, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > RT_CSV_MAX_BYTES) {
        fclose(f);
        return slm_err(err, err_len, "%s: %lld bytes, more than the limit of %u", path, (long long)st.st_size,
                       (unsigned)RT_CSV_MAX_BYTES);
    }
    size_t size = (size_t)st.st_size;
    char *data = malloc(size ? size : 1);
    if (!data) {
        fclose(f);
        return slm_err(err, err_len, "%s: out of memory", path);
    }
    size_t got = fread(data, 1, size, f);
    bool short_read = got != size || ferror(f);
    fclose(f);
    if (short_read) {
        free(data);
        return slm_err(err, err_len, "%s: read error", path);
    }
    char inner[256];
    int rc = rt_csv_parse(data, size, out, inner, sizeof inner);
    free(data);
    if (rc) return slm_err(err, err_len, "%s: %s", path, inner);
    return 0;
}

void rt_csv_free(rt_csv *t) {
    free(t->cell);
    free(t->text);
    free(t->line);
    *t = (rt_csv){0};
}
