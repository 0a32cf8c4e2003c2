/* Internals of the audit log shared by the writer (audit.c) and the readers (verify.c): the line
 * format, file names, HEAD slots, keys and times. See include/slm_audit.h for the format. */
#ifndef SLM_AUDIT_IMPL_H
#define SLM_AUDIT_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "slm_audit.h"

#define AUDIT_HASH_HEX 64  /* sha256 */
#define AUDIT_SIG_HEX 128  /* ed25519 signature */
#define AUDIT_SIGNER_HEX 16
#define AUDIT_ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"
#define AUDIT_RECORD_SIG_PREFIX "slm-audit-record:"
#define AUDIT_HEAD_SIG_PREFIX "slm-audit-head:"
/* HEAD is two fixed slots written alternately, so a write torn by a crash always leaves the other intact. */
#define AUDIT_HEAD_SLOT 512
#define AUDIT_FILE_PREFIX "audit-"
#define AUDIT_FILE_SUFFIX ".jsonl"
#define AUDIT_NAME_MAX 32
#define AUDIT_DEFAULT_ROTATE ((size_t)64 << 20)

/* Tests only: the group-commit leader sleeps this long before its fdatasync (0 = never), so a test
 * can make concurrent appenders meet in one batch deterministically. */
extern unsigned audit_test_sync_delay_us;

/* One record line, checked for self-consistency (format, hash) but not for its place in the chain. */
typedef struct audit_rec {
    uint64_t seq;
    double time;                     /* unix seconds */
    size_t body_len;                 /* bytes before ,"hash": */
    char hash[AUDIT_HASH_HEX + 1];
    char prev[AUDIT_HASH_HEX + 1];
    bool has_signer, has_sig;
    char signer[AUDIT_SIGNER_HEX + 1];
    char sig[AUDIT_SIG_HEX + 1];
    /* a recovery record: the torn bytes it declares */
    bool has_recovered;
    char rec_file[AUDIT_NAME_MAX];
    uint64_t rec_offset, rec_bytes;
    char rec_sha256[AUDIT_HASH_HEX + 1];
} audit_rec;

/* Checks one line (without its newline): the hash/sig suffix, the hash over the body, the JSON and
 * the log's fields. 0 = valid; -1 with a one-line reason in why. */
int audit_parse_line(const char *line, size_t len, audit_rec *r, char *why, size_t why_len);
/* True if the signature of a parsed record verifies with pk. */
bool audit_check_sig(const audit_rec *r, const unsigned char pk[crypto_sign_PUBLICKEYBYTES]);
void audit_signer_of(const unsigned char pk[crypto_sign_PUBLICKEYBYTES], char out[AUDIT_SIGNER_HEX + 1]);

/* "audit-000042.jsonl"; audit_file_number returns 0 for any other name (numbers start at 1). */
void audit_file_name(unsigned num, char out[AUDIT_NAME_MAX]);
unsigned audit_file_number(const char *name);
/* The log's file numbers, ascending (malloc'd; *n may be 0). -1 with err if the directory cannot be read. */
int audit_list_files(const char *dir, unsigned **nums, size_t *n, char *err, size_t err_len);
/* Reads [offset, end of file) into a malloc'd buffer. */
int audit_read_file(const char *path, uint64_t offset, char **buf, size_t *len, char *err, size_t err_len);

typedef struct audit_head {
    uint64_t seq;
    char hash[AUDIT_HASH_HEX + 1];
    bool signed_;
} audit_head;
/* Formats one HEAD slot (AUDIT_HEAD_SLOT bytes, space-padded, newline-terminated); sk may be NULL. */
void audit_head_format(uint64_t seq, const char *hash, const unsigned char *sk, char out[AUDIT_HEAD_SLOT]);
/* The newest valid slot of a HEAD file's bytes. pk (may be NULL): slots must carry a valid signature.
 * 0 = found; -1 = no valid slot (why says what was wrong). */
int audit_head_parse(const char *buf, size_t len, const unsigned char *pk, audit_head *out, char *why, size_t why_len);

/* <data_dir>/audit.pub: 1 = loaded, 0 = absent, -1 = unreadable or malformed (err). */
int audit_load_pub(const char *data_dir, unsigned char pk[crypto_sign_PUBLICKEYBYTES], char *err, size_t err_len);
int audit_load_pub_file(const char *path, unsigned char pk[crypto_sign_PUBLICKEYBYTES], char *err, size_t err_len);

/* The current time as RFC 3339 UTC with milliseconds (24 characters). */
void audit_time_now(char out[32]);
void audit_sha256_hex(const void *data, size_t len, char out[AUDIT_HASH_HEX + 1]);
void audit_to_hex(const unsigned char *bin, size_t n, char *out);
bool audit_is_hex(const char *s, size_t n);

#endif
