/* slm audit — the tamper-evident audit log (issue 13).
 *
 * Records live in append-only files <data_dir>/audit/audit-000001.jsonl, audit-000002.jsonl, …, one
 * JSON object per line. The log adds to each caller record:
 *   seq     1, 2, 3, … across all files (no gaps);
 *   time    RFC 3339 UTC with milliseconds, e.g. "2026-12-05T06:13:38.123Z";
 *   signer  (signed logs) the first 16 hex digits of the ed25519 public key;
 *   prev    the `hash` of the previous record (64 zeros for the first record ever);
 *   hash    hex sha256 of the record's body: the exact bytes of the line up to, not including,
 *           `,"hash":` followed by one `}` — i.e. the record as written before hash and sig were
 *           appended. Hashing the stored bytes (not a re-serialisation) makes every byte count;
 *   sig     (signed logs) hex ed25519 signature of the message "slm-audit-record:" + hash.
 * A line is `{"seq":N,"time":T,<caller fields, sorted, compact>[,"signer":S],"prev":P,"hash":H[,"sig":G]}`.
 *
 * <data_dir>/audit/HEAD holds the last durable seq and hash (signed when the log is signed), updated
 * after every group commit, so removing records at the tail is detected too. Signing keys:
 * <data_dir>/audit.key (0600, secret) and <data_dir>/audit.pub (hex public key); a data directory
 * that has audit.key always signs — signing, once on, stays on for that log.
 *
 * Crashes: a record is durable (write + fdatasync) before slm_audit_append returns. After a crash
 * the bytes after the last complete valid record of the newest file ("torn tail": a record whose
 * append never returned) are left in place, terminated by a newline, and declared by a recovery
 * record that slm_audit_open appends at once: {"event":"audit.recovered","recovered":{"file":F,
 * "offset":O,"bytes":N,"sha256":X}} — the chain continues from the last good record. verify
 * reports every declared torn region as a warning (exit 0), and an undeclared torn tail at the very
 * end (crash, not reopened yet) also as a warning; anything else that does not chain is an error. */
#ifndef SLM_AUDIT_H
#define SLM_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct slm_audit slm_audit;

typedef struct slm_audit_options {
    bool sign;           /* create an ed25519 key pair on first use and sign every record */
    size_t rotate_bytes; /* start a new file once the current one reaches this size; 0 = 64 MiB */
} slm_audit_options;

/* Largest caller record (JSON text) slm_audit_append accepts. */
#define SLM_AUDIT_MAX_RECORD_BYTES ((size_t)16 << 20)

/* Opens (creating, mode 0700) <data_dir>/audit and takes its lock (one writer per log: a second
 * opener fails). Recovers a torn tail as described above. Refuses a log whose HEAD is missing or
 * ahead of the records (records were removed: run verify) rather than hide it. */
int slm_audit_open(const char *data_dir, const slm_audit_options *opt, slm_audit **out, char *err, size_t err_len);
void slm_audit_close(slm_audit *a);

/* Appends one record: `record_json` is a JSON object (the caller's fields; the names seq, time,
 * prev, hash, sig, signer and recovered are reserved). Thread-safe; returns 0 only once the record
 * is durable. Concurrent appenders share one write + fdatasync (group commit: one of them flushes
 * what the others queued meanwhile). After a write or sync failure the log refuses every later
 * append (fail closed) until it is reopened. Returns -1 with err on failure. */
int slm_audit_append(slm_audit *a, const char *record_json, char *err, size_t err_len);
/* The same, also giving the record's seq. */
int slm_audit_append_seq(slm_audit *a, const char *record_json, uint64_t *seq, char *err, size_t err_len);

typedef struct slm_audit_stats {
    uint64_t records; /* appended through this handle */
    uint64_t commits; /* group commits (one write + fdatasync of the batch each) */
    uint64_t fsyncs;  /* fdatasync calls on log files (commits + syncs before a rotation) */
    uint64_t last_seq;
    bool signing;
} slm_audit_stats;
void slm_audit_get_stats(slm_audit *a, slm_audit_stats *out);

/* Verifies the whole log in data_dir: every file in order, each record's hash, its prev link and
 * seq, the signatures (when audit.pub exists or records name a signer), and HEAD. Writes a human
 * report to `report` (may be NULL): "ok: 1234 records in 3 files …" or "bad: audit-000002.jsonl
 * line 12 (seq 57): hash mismatch …", plus "warning: …" lines for torn records. Returns 0 when the
 * chain is intact, 1 when it is broken (the first bad record is named), -1 on an I/O error (err). */
int slm_audit_verify(const char *data_dir, FILE *report, char *err, size_t err_len);
/* The same, checking the signatures against the public key in `pub_path` (a copy kept away from
 * the data directory) instead of trusting <data_dir>/audit.pub, which must then equal it if present:
 * someone able to rewrite the log and its key pair cannot forge that. NULL = slm_audit_verify. */
int slm_audit_verify_with_key(const char *data_dir, const char *pub_path, FILE *report, char *err, size_t err_len);

/* Streams the records matching the filter, in order, to fn (the line as stored, without its
 * newline; nonzero from fn stops). All filter fields are optional: since = unix seconds (0 = all),
 * key = principal name, route = "local"/"upstream". Lines that are not JSON objects (torn records)
 * are skipped; query does not verify — run slm_audit_verify for that. */
typedef struct slm_audit_filter {
    double since;
    const char *key;
    const char *route;
} slm_audit_filter;
typedef int (*slm_audit_record_fn)(void *user, const char *record_line);
int slm_audit_query(const char *data_dir, const slm_audit_filter *f, slm_audit_record_fn fn, void *user, char *err,
                    size_t err_len);

/* "2026-12-05", "2026-12-05T06:13:38Z", "2026-12-05T06:13:38.123+02:00" (a space may replace T;
 * no offset = UTC) or unix seconds ("1764915218", "1764915218.5") into unix seconds. */
int slm_audit_parse_time(const char *s, double *out);

#ifdef __cplusplus
}
#endif

#endif
