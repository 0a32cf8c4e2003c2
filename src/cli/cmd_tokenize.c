/* slm tokenize: shows how a model's tokenizer splits a text. Loads only the vocabulary, so it
 * works on vocab-only GGUFs and is instant on big models. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "slm.h"

static const char usage_text[] =
    "usage: slm tokenize MODEL [TEXT|-] [--ids] [--no-bos] [--special]\n"
    "\n"
    "Tokenizes TEXT (or standard input, with '-' or no TEXT) with the model's tokenizer.\n"
    "By default prints one token per line: its id and its text in quotes, with \\n, \\t, \\r, \\\\,\n"
    "\\' and bytes that are not valid UTF-8 (e.g. one byte of a split character) escaped.\n"
    "\n"
    "  --ids       print only the ids, space-separated, on one line\n"
    "  --no-bos    do not add the BOS/EOS (or CLS/SEP) tokens the model asks for\n"
    "  --special   parse special-token texts such as <|im_start|> into their ids\n"
    "  --          end of options (the next argument is the text)\n";

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one. */
static size_t valid_utf8_len(const unsigned char *s, size_t n) {
    size_t len;
    unsigned char c = s[0];
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) len = 3;
    else if (c >= 0xF0 && c <= 0xF4) len = 4;
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
    if (c == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
    if (c == 0xF0 && s[1] < 0x90) return 0;
    if (c == 0xF4 && s[1] >= 0x90) return 0;
    return len;
}

static void print_escaped(const char *p, size_t n) {
    const unsigned char *s = (const unsigned char *)p;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\\') fputs("\\\\", stdout);
        else if (c == '\'') fputs("\\'", stdout);
        else if (c >= 0x20 && c < 0x7F) fputc(c, stdout);
        else if (c >= 0x80) {
            size_t k = valid_utf8_len(s + i, n - i);
            if (k) {
                fwrite(s + i, 1, k, stdout);
                i += k;
                continue;
            }
            printf("\\x%02x", c);
        } else {
            printf("\\x%02x", c);
        }
        i++;
    }
}

int cmd_tokenize(int argc, char **argv) {
    const char *model_path = NULL, *text_arg = NULL;
    bool ids_only = false, add_special = true, parse_special = false, options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!options_done && cli_is_help(a)) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (!options_done && strcmp(a, "--") == 0) options_done = true;
        else if (!options_done && strcmp(a, "--ids") == 0) ids_only = true;
        else if (!options_done && strcmp(a, "--no-bos") == 0) add_special = false;
        else if (!options_done && strcmp(a, "--special") == 0) parse_special = true;
        else if (!options_done && a[0] == '-' && a[1] == '-') return cli_fail("tokenize", "unknown option '%s'", a);
        else if (!model_path) model_path = a;
        else if (!text_arg) text_arg = a;
        else return cli_fail("tokenize", "unexpected argument '%s' (quote the text)", a);
    }
    if (!model_path) {
        fputs(usage_text, stderr);
        return 1;
    }

    size_t len;
    char *owned = NULL;
    const char *text;
    if (!text_arg || strcmp(text_arg, "-") == 0) {
        owned = cli_read_file("tokenize", "-", CLI_MAX_TEXT_BYTES, "the 16 MiB limit for a text to tokenize", &len);
        if (!owned) return 1;
        text = owned;
    } else {
        text = text_arg;
        len = strlen(text_arg);
    }

    slm_model *m = NULL;
    char err[512];
    slm_model_params mp = {.vocab_only = true};
    if (slm_model_load(model_path, &mp, &m, err, sizeof err)) {
        free(owned);
        return cli_fail("tokenize", "%s", err);
    }
    int rc = 1;
    slm_token *ids = NULL;
    int n = slm_tokenize(m, text, len, add_special, parse_special, NULL, 0, err, sizeof err);
    if (n < 0 && n != SLM_TOKENIZE_ERROR) {
        ids = malloc((size_t)-n * sizeof *ids);
        if (!ids) {
            cli_fail("tokenize", "out of memory for %d tokens", -n);
            goto done;
        }
        n = slm_tokenize(m, text, len, add_special, parse_special, ids, -n, err, sizeof err);
    }
    if (n < 0) {
        cli_fail("tokenize", "%s", err);
        goto done;
    }
    if (ids_only) {
        for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    } else {
        char small[256];
        for (int i = 0; i < n; i++) {
            char *piece = small;
            int k = slm_token_to_piece(m, ids[i], true, small, sizeof small);
            if (k < 0) {
                piece = malloc((size_t)-k);
                if (!piece) {
                    cli_fail("tokenize", "out of memory");
                    goto done;
                }
                k = slm_token_to_piece(m, ids[i], true, piece, -k);
            }
            printf("%6d '", ids[i]);
            print_escaped(piece, (size_t)(k > 0 ? k : 0));
            fputs("'\n", stdout);
            if (piece != small) free(piece);
        }
    }
    rc = fflush(stdout) == 0 ? 0 : cli_fail("tokenize", "cannot write the output");
done:
    free(ids);
    free(owned);
    slm_model_free(m);
    return rc;
}
