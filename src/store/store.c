/* The state store on SQLite: opening, migrations, and every SQL statement slm runs (see slm_store.h). */
#include "slm_store.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <pwd.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store_impl.h"
#include "util/err.h"

struct slm_store {
    sqlite3 *db;
    pthread_mutex_t mu;
    char dir[PATH_MAX];
};

/* Each migration moves the schema from version i to i+1; never edit one that has shipped. */
static const char *const migrations[] = {
    /* 1: keys and the ledger */
    "CREATE TABLE keys ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  secret_hash TEXT NOT NULL UNIQUE,"
    "  prefix TEXT NOT NULL,"
    "  models TEXT NOT NULL DEFAULT '',"
    "  local_only INTEGER NOT NULL DEFAULT 0,"
    "  admin INTEGER NOT NULL DEFAULT 0,"
    "  rpm INTEGER NOT NULL DEFAULT 0,"
    "  tpm INTEGER NOT NULL DEFAULT 0,"
    "  budget_usd REAL NOT NULL DEFAULT 0,"
    "  budget_period INTEGER NOT NULL DEFAULT 0,"
    "  pii TEXT NOT NULL DEFAULT '',"
    "  created REAL NOT NULL,"
    "  revoked REAL NOT NULL DEFAULT 0);"
    "CREATE UNIQUE INDEX keys_active_name ON keys(name) WHERE revoked = 0;"
    "CREATE TABLE ledger ("
    "  id INTEGER PRIMARY KEY,"
    "  request_id TEXT NOT NULL,"
    "  time REAL NOT NULL,"
    "  key TEXT NOT NULL,"
    "  model TEXT NOT NULL,"
    "  route TEXT NOT NULL,"
    "  prompt_tokens INTEGER NOT NULL,"
    "  completion_tokens INTEGER NOT NULL,"
    "  cost REAL NOT NULL,"
    "  frontier_cost REAL NOT NULL,"
    "  latency_ms REAL NOT NULL,"
    "  status INTEGER NOT NULL);"
    "CREATE INDEX ledger_key_time ON ledger(key, time);"
    "CREATE INDEX ledger_time ON ledger(time);",
    /* 2: the retrieval collections a key may read ("" = all) */
    "ALTER TABLE keys ADD COLUMN collections TEXT NOT NULL DEFAULT '';",
    /* 3: stored Responses API objects, chained by previous_response_id */
    "CREATE TABLE responses ("
    "  id TEXT PRIMARY KEY,"
    "  created REAL NOT NULL,"
    "  key TEXT NOT NULL,"
    "  model TEXT NOT NULL,"
    "  previous_id TEXT NOT NULL DEFAULT '',"
    "  response TEXT NOT NULL," /* the response object as returned, JSON */
    "  items TEXT NOT NULL);"   /* the conversation items up to and including this response's output, JSON */
    "CREATE INDEX responses_created ON responses(created);",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

const char *slm_data_dir_default(char *buf, size_t cap) {
    const char *home = getenv("SLM_HOME");
    int n;
    if (home && *home) {
        n = snprintf(buf, cap, "%s", home);
    } else if (getuid() == 0) {
        n = snprintf(buf, cap, "/var/lib/slm");
    } else {
        const char *xdg = getenv("XDG_DATA_HOME");
        if (xdg && *xdg) {
            n = snprintf(buf, cap, "%s/slm", xdg);
        } else {
            const char *h = getenv("HOME");
            if (!h || !*h) {
                struct passwd *pw = getpwuid(getuid());
                h = pw ? pw->pw_dir : "/tmp";
            }
            n = snprintf(buf, cap, "%s/.local/share/slm", h);
        }
    }
    return n < 0 || (size_t)n >= cap ? NULL : buf;
}

int store_mkdirs(const char *path, char *err, size_t err_len) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return slm_err(err, err_len, "data directory path too long");
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
                return slm_err(err, err_len, "cannot create data directory %s: %s", tmp, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return slm_err(err, err_len, "data directory %s is not a directory", path);
    return 0;
}

static int db_fail(slm_store *s, char *err, size_t err_len, const char *what) {
    return slm_err(err, err_len, "state store (%s/state.db): %s: %s", s->dir, what, sqlite3_errmsg(s->db));
}

static int exec_sql(slm_store *s, const char *sql, char *err, size_t err_len) {
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        slm_err(err, err_len, "state store (%s/state.db): %s", s->dir, msg ? msg : "error");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int user_version(slm_store *s) {
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) return -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int migrate(slm_store *s, char *err, size_t err_len) {
    /* BEGIN IMMEDIATE: two processes opening a fresh directory at once migrate one after the other */
    if (exec_sql(s, "BEGIN IMMEDIATE", err, err_len)) return -1;
    int v = user_version(s);
    if (v < 0) {
        exec_sql(s, "ROLLBACK", NULL, 0);
        return db_fail(s, err, err_len, "reading the schema version");
    }
    if (v > SCHEMA_VERSION) {
        exec_sql(s, "ROLLBACK", NULL, 0);
        return slm_err(err, err_len,
                       "state store %s/state.db has schema version %d, newer than this slm knows (%d): upgrade slm",
                       s->dir, v, SCHEMA_VERSION);
    }
    for (; v < SCHEMA_VERSION; v++) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
        if (exec_sql(s, migrations[v], err, err_len) || exec_sql(s, sql, err, err_len)) {
            exec_sql(s, "ROLLBACK", NULL, 0);
            return -1;
        }
    }
    return exec_sql(s, "COMMIT", err, err_len);
}

int slm_store_open(const char *data_dir, slm_store **out, char *err, size_t err_len) {
    *out = NULL;
    if (!data_dir || !*data_dir) return slm_err(err, err_len, "no data directory");
    if (store_mkdirs(data_dir, err, err_len)) return -1;
    slm_store *s = calloc(1, sizeof *s);
    if (!s) return slm_err(err, err_len, "out of memory");
    snprintf(s->dir, sizeof s->dir, "%s", data_dir);
    pthread_mutex_init(&s->mu, NULL);
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/state.db", data_dir);
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK) {
        slm_err(err, err_len, "cannot open state store %s: %s", path, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        slm_store_close(s);
        return -1;
    }
    chmod(path, 0600);
    sqlite3_busy_timeout(s->db, 10000);
    if (exec_sql(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON", err, err_len) ||
        migrate(s, err, err_len)) {
        slm_store_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

void slm_store_close(slm_store *s) {
    if (!s) return;
    if (s->db) sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

const char *slm_store_dir(const slm_store *s) { return s->dir; }

int slm_store_schema_version(slm_store *s) {
    pthread_mutex_lock(&s->mu);
    int v = user_version(s);
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* ---------- keys ---------- */

#define KEY_COLUMNS "name, prefix, models, local_only, admin, rpm, tpm, budget_usd, budget_period, created, revoked, pii, collections"

static void text_col(sqlite3_stmt *st, int i, char *out, size_t cap) {
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(out, cap, "%s", t ? (const char *)t : "");
}

static void read_key(sqlite3_stmt *st, slm_key_info *k) {
    memset(k, 0, sizeof *k);
    text_col(st, 0, k->name, sizeof k->name);
    text_col(st, 1, k->prefix, sizeof k->prefix);
    text_col(st, 2, k->models, sizeof k->models);
    k->local_only = sqlite3_column_int(st, 3) != 0;
    k->admin = sqlite3_column_int(st, 4) != 0;
    k->rpm = sqlite3_column_int(st, 5);
    k->tpm = sqlite3_column_int(st, 6);
    k->budget_usd = sqlite3_column_double(st, 7);
    int period = sqlite3_column_int(st, 8);
    k->budget_period = period >= SLM_BUDGET_NONE && period <= SLM_BUDGET_TOTAL ? (slm_budget_period)period : SLM_BUDGET_NONE;
    k->created = sqlite3_column_double(st, 9);
    k->revoked = sqlite3_column_double(st, 10);
    text_col(st, 11, k->pii, sizeof k->pii);
    text_col(st, 12, k->collections, sizeof k->collections);
}

static double unix_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int slm_store_key_add(slm_store *s, const slm_key_info *k, const char *secret_hash, char *err, size_t err_len) {
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO keys (secret_hash, " KEY_COLUMNS ") VALUES (?,?,?,?,?,?,?,?,?,?,?,0,?,?)", -1, &st,
                           NULL) != SQLITE_OK) {
        db_fail(s, err, err_len, "adding a key");
        goto out;
    }
    sqlite3_bind_text(st, 1, secret_hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, k->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, k->prefix, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, k->models, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 5, k->local_only);
    sqlite3_bind_int(st, 6, k->admin);
    sqlite3_bind_int(st, 7, k->rpm);
    sqlite3_bind_int(st, 8, k->tpm);
    sqlite3_bind_double(st, 9, k->budget_usd);
    sqlite3_bind_int(st, 10, (int)k->budget_period);
    sqlite3_bind_double(st, 11, k->created > 0 ? k->created : unix_now());
    sqlite3_bind_text(st, 12, k->pii, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 13, k->collections, -1, SQLITE_TRANSIENT);
    int step = sqlite3_step(st);
    if (step == SQLITE_CONSTRAINT)
        slm_err(err, err_len, "a key named '%s' already exists (revoke it first)", k->name);
    else if (step != SQLITE_DONE)
        db_fail(s, err, err_len, "adding a key");
    else
        rc = 0;
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int slm_store_key_lookup(slm_store *s, const char *secret_hash, slm_key_info *out, char *err, size_t err_len) {
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(s->db, "SELECT " KEY_COLUMNS " FROM keys WHERE secret_hash = ? AND revoked = 0", -1, &st,
                           NULL) != SQLITE_OK) {
        db_fail(s, err, err_len, "looking up a key");
        goto out;
    }
    sqlite3_bind_text(st, 1, secret_hash, -1, SQLITE_TRANSIENT);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        read_key(st, out);
        rc = 1;
    } else if (step == SQLITE_DONE) {
        rc = 0;
    } else {
        db_fail(s, err, err_len, "looking up a key");
    }
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int slm_store_key_list(slm_store *s, slm_key_info **out, char *err, size_t err_len) {
    *out = NULL;
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = NULL;
    int n = 0, cap = 0, rc = -1;
    slm_key_info *keys = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT " KEY_COLUMNS " FROM keys ORDER BY id", -1, &st, NULL) != SQLITE_OK) {
        db_fail(s, err, err_len, "listing keys");
        goto out;
    }
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            slm_key_info *grown = realloc(keys, sizeof *grown * (size_t)cap);
            if (!grown) {
                slm_err(err, err_len, "out of memory");
                goto out;
            }
            keys = grown;
        }
        read_key(st, &keys[n++]);
    }
    if (step != SQLITE_DONE) {
        db_fail(s, err, err_len, "listing keys");
        goto out;
    }
    *out = keys;
    keys = NULL;
    rc = n;
out:
    free(keys);
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int slm_store_key_revoke(slm_store *s, const char *name, char *err, size_t err_len) {
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(s->db, "UPDATE keys SET revoked = ? WHERE name = ? AND revoked = 0", -1, &st, NULL) !=
        SQLITE_OK) {
        db_fail(s, err, err_len, "revoking a key");
        goto out;
    }
    sqlite3_bind_double(st, 1, unix_now());
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_DONE) {
        db_fail(s, err, err_len, "revoking a key");
        goto out;
    }
    rc = sqlite3_changes(s->db) > 0 ? 1 : 0;
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int slm_store_key_count(slm_store *s) {
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = NULL;
    int n = -1;
    if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM keys WHERE revoked = 0", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---------- ledger ---------- */

int slm_store_ledger_add(slm_store *s, const slm_ledger_entry *e, char *err, size_t err_len) {
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO ledger (request_id, time, key, model, route, prompt_tokens, completion_tokens,"
                           " cost, frontier_cost, latency_ms, status) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK) {
        db_fail(s, err, err_len, "recording usage");
        goto out;
    }
    sqlite3_bind_text(st, 1, e->request_id ? e->request_id : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(st, 2, e->time > 0 ? e->time : unix_now());
    sqlite3_bind_text(st, 3, e->key ? e->key : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, e->model ? e->model : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, e->route ? e->route : "local", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 6, e->prompt_tokens);
    sqlite3_bind_int(st, 7, e->completion_tokens);
    sqlite3_bind_double(st, 8, e->cost);
    sqlite3_bind_double(st, 9, e->frontier_cost);
    sqlite3_bind_double(st, 10, e->latency_ms);
    sqlite3_bind_int(st, 11, e->status);
    if (sqlite3_step(st) != SQLITE_DONE)
        db_fail(s, err, err_len, "recording usage");
    else
        rc = 0;
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

double slm_store_spend(slm_store *s, const char *key, double since) {
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = NULL;
    double spent = -1;
    if (sqlite3_prepare_v2(s->db, "SELECT coalesce(sum(cost), 0) FROM ledger WHERE key = ? AND time >= ?", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(st, 2, since);
        if (sqlite3_step(st) == SQLITE_ROW) spent = sqlite3_column_double(st, 0);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return spent;
}

int slm_store_ledger_totals(slm_store *s, double since, const char *by, slm_ledger_totals **out, char *err,
                            size_t err_len) {
    *out = NULL;
    const char *group = "''";
    if (by && strcmp(by, "key") == 0) group = "key";
    else if (by && strcmp(by, "route") == 0) group = "route";
    else if (by && strcmp(by, "model") == 0) group = "model";
    else if (by && *by) return slm_err(err, err_len, "cannot group by '%s' (key, route or model)", by);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT %s, count(*), coalesce(sum(prompt_tokens),0), coalesce(sum(completion_tokens),0),"
             " coalesce(sum(route = 'local'),0), coalesce(sum(cost),0), coalesce(sum(frontier_cost),0)"
             " FROM ledger WHERE time >= ? GROUP BY 1 ORDER BY 1",
             group);
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = NULL;
    int n = 0, cap = 0, rc = -1;
    slm_ledger_totals *rows = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        db_fail(s, err, err_len, "summing the ledger");
        goto out;
    }
    sqlite3_bind_double(st, 1, since);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            slm_ledger_totals *grown = realloc(rows, sizeof *grown * (size_t)cap);
            if (!grown) {
                slm_err(err, err_len, "out of memory");
                goto out;
            }
            rows = grown;
        }
        slm_ledger_totals *t = &rows[n++];
        memset(t, 0, sizeof *t);
        text_col(st, 0, t->group, sizeof t->group);
        t->requests = sqlite3_column_int64(st, 1);
        t->prompt_tokens = sqlite3_column_int64(st, 2);
        t->completion_tokens = sqlite3_column_int64(st, 3);
        t->local_requests = sqlite3_column_int64(st, 4);
        t->cost = sqlite3_column_double(st, 5);
        t->frontier_cost = sqlite3_column_double(st, 6);
    }
    if (step != SQLITE_DONE) {
        db_fail(s, err, err_len, "summing the ledger");
        goto out;
    }
    *out = rows;
    rows = NULL;
    rc = n;
out:
    free(rows);
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(double *v, size_t n, double q) {
    if (n == 0) return 0;
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

int slm_store_ledger_series(slm_store *s, double since, double width, slm_ledger_bucket **out, char *err,
                            size_t err_len) {
    *out = NULL;
    if (!(width >= 1)) return slm_err(err, err_len, "bucket width must be at least 1 second");
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = NULL;
    int n = 0, cap = 0, rc = -1;
    slm_ledger_bucket *rows = NULL;
    double *lat = NULL;
    size_t n_lat = 0, cap_lat = 0;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT time, route, prompt_tokens, completion_tokens, cost, frontier_cost, latency_ms"
                           " FROM ledger WHERE time >= ? ORDER BY time",
                           -1, &st, NULL) != SQLITE_OK) {
        db_fail(s, err, err_len, "reading the ledger");
        goto out;
    }
    sqlite3_bind_double(st, 1, since);
    double latency_sum = 0;
    int step;
    for (;;) {
        step = sqlite3_step(st);
        double t = step == SQLITE_ROW ? sqlite3_column_double(st, 0) : 0;
        double start = step == SQLITE_ROW ? floor(t / width) * width : -1;
        /* close the current bucket when the next row starts another one (or the rows end) */
        if (n > 0 && rows[n - 1].start != start && n_lat > 0) {
            slm_ledger_bucket *b = &rows[n - 1];
            b->completion_tokens_per_s = latency_sum > 0 ? (double)b->completion_tokens / (latency_sum / 1e3) : 0;
            b->latency_p95_ms = percentile(lat, n_lat, 0.95);
            b->latency_p50_ms = percentile(lat, n_lat, 0.50);
            n_lat = 0;
            latency_sum = 0;
        }
        if (step != SQLITE_ROW) break;
        if (n == 0 || rows[n - 1].start != start) {
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                slm_ledger_bucket *grown = realloc(rows, sizeof *grown * (size_t)cap);
                if (!grown) {
                    slm_err(err, err_len, "out of memory");
                    goto out;
                }
                rows = grown;
            }
            memset(&rows[n], 0, sizeof rows[n]);
            rows[n++].start = start;
        }
        slm_ledger_bucket *b = &rows[n - 1];
        const unsigned char *route = sqlite3_column_text(st, 1);
        b->requests++;
        if (route && strcmp((const char *)route, "local") == 0) b->local_requests++;
        b->prompt_tokens += sqlite3_column_int64(st, 2);
        b->completion_tokens += sqlite3_column_int64(st, 3);
        b->cost += sqlite3_column_double(st, 4);
        b->frontier_cost += sqlite3_column_double(st, 5);
        double ms = sqlite3_column_double(st, 6);
        latency_sum += ms;
        if (n_lat == cap_lat) {
            cap_lat = cap_lat ? 2 * cap_lat : 256;
            double *grown = realloc(lat, sizeof *grown * cap_lat);
            if (!grown) {
                slm_err(err, err_len, "out of memory");
                goto out;
            }
            lat = grown;
        }
        lat[n_lat++] = ms;
    }
    if (step != SQLITE_DONE) {
        db_fail(s, err, err_len, "reading the ledger");
        goto out;
    }
    *out = rows;
    rows = NULL;
    rc = n;
out:
    free(rows);
    free(lat);
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}
