/* slm redact: finds personal data and credentials in text (the PII guard of the request gate) and
 * prints the spans and/or the text with placeholders. One input line = one text = one request:
 * placeholders are numbered per line ("[EMAIL_1]"; the same value gets the same placeholder). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "slm_pii.h"

static const char usage_text[] =
    "usage: slm redact [--mode detect|mask] [--json]\n"
    "\n"
    "Reads standard input line by line. A line starting with '{' is a JSON object whose \"text\"\n"
    "string is scanned (other fields are ignored; \"id\" is copied to the output); any other line is\n"
    "the text itself. Detects PERSON, PHONE, EMAIL, SECRET, CREDIT_CARD, IBAN, US_SSN, IP_ADDRESS, URL,\n"
    "ADDRESS, LOCATION and DATE_OF_BIRTH with rules, checksums, context words and built-in name/place\n"
    "lists (no model, no data files).\n"
    "\n"
    "  --mode mask    (default) replace each entity by a placeholder such as [EMAIL_1]; one value\n"
    "                 keeps one placeholder within the line\n"
    "  --mode detect  only report the entities; the text is not changed\n"
    "  --json         one JSON object per input line:\n"
    "                   {\"text\": ..., \"spans\": [{\"start\", \"end\", \"label\"}], \"redacted\": ...}\n"
    "                 start/end count Unicode code points (Python string indices), end exclusive;\n"
    "                 \"redacted\" is present in mask mode only\n"
    "\n"
    "Without --json, mask mode prints the redacted text of each line, and detect mode prints one line\n"
    "per entity: LINE<TAB>LABEL<TAB>START<TAB>END<TAB>VALUE (code points, newlines in VALUE as \\n).\n"
    "A line that is not valid JSON (or not an object with a string \"text\"), or --json output of a\n"
    "text that is not valid UTF-8, is reported on standard error with its line number, written as\n"
    "{\"line\": N, \"error\": ...} with --json (so output lines stay aligned with input lines), and\n"
    "makes the exit status 1 after the remaining lines are processed.\n";

typedef struct {
    bool mask, json;
    const slm_pii *det;
    long errors;
} redact_opts;

static void print_json_line(json_t *obj) {
    char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
}

static void line_error(redact_opts *o, long line_no, const char *msg) {
    fprintf(stderr, "slm redact: line %ld: %s\n", line_no, msg);
    o->errors++;
    if (o->json) {
        json_t *e = json_pack("{s:I,s:s}", "line", (json_int_t)line_no, "error", msg);
        if (e) print_json_line(e);
        json_decref(e);
    }
}

static bool utf8_valid(const char *p, size_t n) {
    const unsigned char *s = (const unsigned char *)p;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
                               : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (!len || i + len > n) return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return false;
        if (c == 0xE0 && s[i + 1] < 0xA0) return false;
        if (c == 0xED && s[i + 1] >= 0xA0) return false;
        if (c == 0xF0 && s[i + 1] < 0x90) return false;
        if (c == 0xF4 && s[i + 1] >= 0x90) return false;
        i += len;
    }
    return true;
}

/* Scans one text and prints its result; false on out of memory. */
static bool redact_text(redact_opts *o, long line_no, const char *text, size_t len, json_t *id) {
    if (o->json && !utf8_valid(text, len)) {
        line_error(o, line_no, "text is not valid UTF-8");
        return true;
    }
    slm_pii_span *spans = NULL;
    int n = slm_pii_scan(o->det, text, len, &spans);
    if (n < 0) return false;
    char *red = NULL;
    size_t red_len = 0;
    if (o->mask) {
        slm_pii_mask *m = slm_pii_mask_new();
        red = m ? slm_pii_mask_apply(m, text, len, spans, n, &red_len) : NULL;
        slm_pii_mask_free(m);
        if (!red) {
            free(spans);
            return false;
        }
    }
    /* code point offsets, counted incrementally */
    size_t *cp = malloc(2 * (size_t)(n > 0 ? n : 1) * sizeof *cp);
    if (!cp) {
        free(spans);
        free(red);
        return false;
    }
    size_t pos = 0, count = 0;
    for (int i = 0; i < n; i++) {
        count += slm_pii_cp_offset(text + pos, spans[i].start - pos);
        cp[2 * i] = count;
        count += slm_pii_cp_offset(text + spans[i].start, spans[i].end - spans[i].start);
        cp[2 * i + 1] = count;
        pos = spans[i].end;
    }
    bool ok = true;
    if (o->json) {
        json_t *obj = json_object(), *arr = json_array();
        ok = obj && arr;
        if (ok && id) json_object_set(obj, "id", id);
        if (ok) json_object_set_new(obj, "text", json_stringn(text, len));
        for (int i = 0; ok && i < n; i++) {
            json_t *sp = json_pack("{s:I,s:I,s:s}", "start", (json_int_t)cp[2 * i], "end", (json_int_t)cp[2 * i + 1],
                                   "label", slm_pii_type_name(spans[i].type));
            ok = sp && json_array_append_new(arr, sp) == 0;
        }
        if (ok) {
            json_object_set_new(obj, "spans", arr);
            arr = NULL;
            if (o->mask) json_object_set_new(obj, "redacted", json_stringn(red, red_len));
            print_json_line(obj);
        }
        json_decref(arr);
        json_decref(obj);
    } else if (o->mask) {
        fwrite(red, 1, red_len, stdout);
        fputc('\n', stdout);
    } else {
        for (int i = 0; i < n; i++) {
            printf("%ld\t%s\t%zu\t%zu\t", line_no, slm_pii_type_name(spans[i].type), cp[2 * i], cp[2 * i + 1]);
            for (size_t k = spans[i].start; k < spans[i].end; k++) {
                if (text[k] == '\n') fputs("\\n", stdout);
                else if (text[k] == '\t') fputs("\\t", stdout);
                else if (text[k] == '\\') fputs("\\\\", stdout);
                else fputc(text[k], stdout);
            }
            fputc('\n', stdout);
        }
    }
    free(cp);
    free(spans);
    free(red);
    return ok;
}

int cmd_redact(int argc, char **argv) {
    redact_opts o = {.mask = true};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (strcmp(a, "--json") == 0) o.json = true;
        else if (strcmp(a, "--mode") == 0 || strncmp(a, "--mode=", 7) == 0) {
            const char *v = a[6] == '=' ? a + 7 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) return cli_fail("redact", "--mode needs a value: detect or mask");
            if (strcmp(v, "detect") == 0) o.mask = false;
            else if (strcmp(v, "mask") == 0) o.mask = true;
            else return cli_fail("redact", "unknown --mode '%s' (detect or mask)", v);
        } else
            return cli_fail("redact", "unknown argument '%s' (see slm redact --help)", a);
    }
    char err[256] = "";
    slm_pii *det = slm_pii_new(err, sizeof err);
    if (!det) return cli_fail("redact", "cannot create the detector: %s", err[0] ? err : "out of memory");
    o.det = det;
    char *line = NULL;
    size_t cap = 0;
    long line_no = 0;
    ssize_t got;
    int rc = 0;
    while ((got = getline(&line, &cap, stdin)) >= 0) {
        line_no++;
        size_t len = (size_t)got;
        if (len && line[len - 1] == '\n') len--;
        if (len && line[len - 1] == '\r') len--;
        size_t lead = 0;
        while (lead < len && (line[lead] == ' ' || line[lead] == '\t')) lead++;
        bool ok;
        if (lead < len && line[lead] == '{') {
            json_error_t jerr;
            json_t *doc = json_loadb(line, len, JSON_ALLOW_NUL, &jerr);
            json_t *text = doc ? json_object_get(doc, "text") : NULL;
            if (!doc) {
                char msg[300];
                snprintf(msg, sizeof msg, "invalid JSON at column %d: %s", jerr.column, jerr.text);
                line_error(&o, line_no, msg);
                ok = true;
            } else if (!json_is_object(doc) || !json_is_string(text)) {
                line_error(&o, line_no, "a JSON line must be an object with a string \"text\"");
                ok = true;
            } else {
                ok = redact_text(&o, line_no, json_string_value(text), json_string_length(text),
                                 json_object_get(doc, "id"));
            }
            json_decref(doc);
        } else {
            ok = redact_text(&o, line_no, line, len, NULL);
        }
        if (!ok) {
            rc = cli_fail("redact", "line %ld: out of memory", line_no);
            break;
        }
    }
    if (ferror(stdin)) rc = cli_fail("redact", "error reading standard input");
    free(line);
    slm_pii_free(det);
    if (fflush(stdout) != 0) rc = cli_fail("redact", "error writing standard output");
    if (rc == 0 && o.errors) {
        fprintf(stderr, "slm redact: %ld line(s) could not be processed\n", o.errors);
        rc = 1;
    }
    return rc;
}
