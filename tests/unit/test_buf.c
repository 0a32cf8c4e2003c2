/* util/buf: appends keep every byte, formatting of any length, take/clear/free, growth limits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "util/buf.h"

int main(void) {
    slm_buf b = {0};
    CHECK(slm_buf_puts(&b, "abc"));
    CHECK(slm_buf_append(&b, "de\0f", 4)); /* embedded NUL kept */
    CHECK(b.len == 7 && memcmp(b.s, "abcde\0f", 8) == 0);
    char big[1000];
    memset(big, 'x', sizeof big);
    CHECK(slm_buf_printf(&b, "%d-%.*s", 42, (int)sizeof big, big)); /* longer than the stack buffer */
    CHECK(b.len == 7 + 3 + sizeof big && b.s[b.len] == 0 && b.s[7] == '4' && b.s[b.len - 1] == 'x');
    slm_buf_clear(&b);
    CHECK(b.len == 0 && b.s[0] == 0 && !b.oom);
    CHECK(slm_buf_printf(&b, "%s", "") && b.len == 0);
    char *s = slm_buf_take(&b);
    CHECK(s && s[0] == 0 && b.s == NULL && b.cap == 0);
    free(s);
    slm_buf empty = {0};
    s = slm_buf_take(&empty); /* nothing appended: still a string */
    CHECK(s && s[0] == 0);
    free(s);
    slm_buf failed = {.oom = true};
    CHECK(!slm_buf_puts(&failed, "x") && slm_buf_take(&failed) == NULL);

    int *arr = NULL;
    size_t cap = 0;
    CHECK(slm_grow((void **)&arr, &cap, 5, sizeof *arr, 8) && cap == 8);
    for (int i = 0; i < 8; i++) arr[i] = i;
    CHECK(slm_grow((void **)&arr, &cap, 9, sizeof *arr, 8) && cap == 16 && arr[7] == 7);
    CHECK(slm_grow((void **)&arr, &cap, 3, sizeof *arr, 8) && cap == 16); /* never shrinks */
    CHECK(!slm_grow((void **)&arr, &cap, SIZE_MAX / 2, sizeof *arr, 8) && cap == 16 && arr[7] == 7);
    free(arr);
    slm_buf_free(&b);
    return test_report("test_buf");
}
