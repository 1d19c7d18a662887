/* checkpoint.c - acknowledged cursors, saved atomically (see checkpoint.h).
 *
 * File format (JSON; 64-bit numbers as decimal strings, since JSON numbers
 * are doubles):
 *   {"version":2,"containers":{"<id>":{"newest":"<ns>","floor":"<ns>",
 *     "evicted":"<ns>"|null,"keys":["<ts>,<stream>,<len>,<hash hex>",...]}}}
 *
 * Version 1 files hashed lines differently: their keys cannot match a
 * replayed line, so they are read without keys and the container resumes
 * right after its newest delivered line (nothing repeated; a line of the
 * other stream stamped within the margin before it could be missed). */
#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "checkpoint.h"
#include "log.h"
#include "strbuf.h"
#include "uvh.h"

#define BUCKETS 256
#define FILE_NAME "cursors.json"
#define FILE_MAX (256u * 1024 * 1024)

typedef struct cp_entry {
  char id[65];
  cursor_t *acked;
  struct cp_entry *next;
} cp_entry_t;

struct checkpoint {
  uv_loop_t *loop;
  char *dir, *path, *tmp;
  int64_t margin;
  int do_fsync;
  cp_entry_t *buckets[BUCKETS];
  size_t count;
  int dirty;
  uv_timer_t timer;
  int timer_open;
  /* a save in flight */
  int writing;
  char *buf;
  size_t len;
  uv_file fd;
  uv_fs_t req;
  char last_error[160];
  uint64_t current_at;      /* uv_hrtime when the file last held everything; 0: never */
  int closing;
  void (*closed)(void *);
  void *closed_ud;
};

static unsigned bucket_of(const char *id) {
  unsigned h = 2166136261u;
  for (; *id; id++) h = (h ^ (unsigned char)*id) * 16777619u;
  return h % BUCKETS;
}

static cp_entry_t *find(const checkpoint_t *cp, const char *id) {
  for (cp_entry_t *e = cp->buckets[bucket_of(id)]; e; e = e->next)
    if (strcmp(e->id, id) == 0) return e;
  return NULL;
}

static cp_entry_t *add(checkpoint_t *cp, const char *id, cursor_t *acked) {
  cp_entry_t *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  snprintf(e->id, sizeof e->id, "%s", id);
  e->acked = acked;
  unsigned b = bucket_of(e->id);
  e->next = cp->buckets[b];
  cp->buckets[b] = e;
  cp->count++;
  return e;
}

/* --- the file ----------------------------------------------------------- */

static char *i64(char *buf, size_t n, int64_t v) {
  snprintf(buf, n, "%" PRId64, v);
  return buf;
}

static int cmp_entry(const void *a, const void *b) {
  return strcmp((*(const cp_entry_t *const *)a)->id, (*(const cp_entry_t *const *)b)->id);
}

/* Serialises every cursor. Returns a malloc'ed text, or NULL when out of
 * memory. */
static char *serialise(const checkpoint_t *cp, size_t *len) {
  cJSON *root = cJSON_CreateObject();
  cJSON *all = cJSON_AddObjectToObject(root, "containers");
  cJSON_AddNumberToObject(root, "version", 2);
  cursor_key_t *keys = NULL;
  size_t keys_cap = 0;
  char num[32], key[96];
  int ok = root && all;
  /* in id order, so the same cursors always give the same text */
  const cp_entry_t **sorted = malloc((cp->count ? cp->count : 1) * sizeof(const cp_entry_t *));
  size_t n_sorted = 0;
  ok = ok && sorted;
  for (unsigned b = 0; ok && b < BUCKETS; b++)
    for (const cp_entry_t *e = cp->buckets[b]; e && n_sorted < cp->count; e = e->next)
      sorted[n_sorted++] = e;
  if (ok) qsort(sorted, n_sorted, sizeof(const cp_entry_t *), cmp_entry);
  for (size_t si = 0; ok && si < n_sorted; si++) {
    const cp_entry_t *e = sorted[si];
    cursor_state_t s;
    {
      cursor_get_state(e->acked, &s);
      if (!s.any) continue;
      cJSON *c = cJSON_AddObjectToObject(all, e->id);
      cJSON *list = c ? cJSON_AddArrayToObject(c, "keys") : NULL;
      ok = list && cJSON_AddStringToObject(c, "newest", i64(num, sizeof num, s.newest)) &&
           cJSON_AddStringToObject(c, "floor", i64(num, sizeof num, s.floor));
      if (ok && s.evicted) ok = cJSON_AddStringToObject(c, "evicted", i64(num, sizeof num, s.evicted_max)) != NULL;
      if (ok && s.n_keys > keys_cap) {
        free(keys);
        keys_cap = s.n_keys;
        ok = (keys = malloc(keys_cap * sizeof *keys)) != NULL;
      }
      size_t n = ok && keys ? cursor_keys(e->acked, keys, s.n_keys) : 0;
      for (size_t i = 0; ok && keys && i < n && i < s.n_keys; i++) {
        snprintf(key, sizeof key, "%" PRId64 ",%u,%u,%016" PRIx64, keys[i].ts,
                 (unsigned)keys[i].stream, (unsigned)keys[i].len, keys[i].hash);
        cJSON *str = cJSON_CreateString(key);
        ok = str && cJSON_AddItemToArray(list, str);
      }
    }
  }
  free(keys);
  free(sorted);
  char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
  cJSON_Delete(root);
  if (text) *len = strlen(text);
  return text;
}

static int parse_i64(const cJSON *v, int64_t *out) {
  if (!cJSON_IsString(v)) return -1;
  char *end;
  errno = 0;
  long long x = strtoll(v->valuestring, &end, 10);
  if (errno || end == v->valuestring || *end) return -1;
  *out = x;
  return 0;
}

/* Parses "<ts>,<stream>,<len>,<hash hex>". Returns 0 or -1. */
static int parse_key(const char *s, cursor_key_t *k) {
  char *end;
  errno = 0;
  long long ts = strtoll(s, &end, 10);
  if (errno || end == s || *end != ',') return -1;
  s = end + 1;
  unsigned long stream = strtoul(s, &end, 10);
  if (errno || end == s || *end != ',' || stream > 3) return -1;
  s = end + 1;
  unsigned long len = strtoul(s, &end, 10);
  if (errno || end == s || *end != ',' || len > UINT32_MAX) return -1;
  s = end + 1;
  unsigned long long hash = strtoull(s, &end, 16);
  if (errno || end == s || *end) return -1;
  k->ts = ts;
  k->stream = (uint8_t)stream;
  k->len = (uint32_t)len;
  k->hash = hash;
  return 0;
}

/* Loads one container's cursor from a file of the given version. Returns 0
 * or -1 (malformed). */
static int load_entry(checkpoint_t *cp, const cJSON *c, int version) {
  cursor_state_t s = {0};
  s.any = 1;
  const cJSON *ev = cJSON_GetObjectItemCaseSensitive(c, "evicted");
  if (!c->string || strlen(c->string) > 64 || parse_i64(cJSON_GetObjectItemCaseSensitive(c, "newest"), &s.newest) ||
      parse_i64(cJSON_GetObjectItemCaseSensitive(c, "floor"), &s.floor))
    return -1;
  if (ev && !cJSON_IsNull(ev)) {
    if (parse_i64(ev, &s.evicted_max)) return -1;
    s.evicted = 1;
  }
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(c, "keys");
  if (!cJSON_IsArray(list)) return -1;
  size_t n = (size_t)cJSON_GetArraySize(list), i = 0;
  cursor_key_t *keys = calloc(n ? n : 1, sizeof *keys);
  if (!keys) return -1;
  const cJSON *k;
  cJSON_ArrayForEach(k, list) {
    if (i >= n || !cJSON_IsString(k) || parse_key(k->valuestring, &keys[i]) != 0) {
      free(keys);
      return -1;
    }
    i++;
  }
  if (version == 1) { /* keys of the old hash: resume past the newest line */
    n = 0;
    if (!s.evicted || s.evicted_max < s.newest) s.evicted_max = s.newest;
    s.evicted = 1;
  }
  s.n_keys = n;
  cursor_t *cur = cursor_restore(cp->margin, CURSOR_MAX_KEYS_DEFAULT, &s, keys, n);
  free(keys);
  if (!cur || !add(cp, c->string, cur)) {
    cursor_free(cur);
    return -1;
  }
  return 0;
}

static void drop_all(checkpoint_t *cp) {
  for (unsigned b = 0; b < BUCKETS; b++)
    while (cp->buckets[b]) {
      cp_entry_t *e = cp->buckets[b];
      cp->buckets[b] = e->next;
      cursor_free(e->acked);
      free(e);
    }
  cp->count = 0;
}

/* Loads cursors from text into cp. Returns 0, or -1 when it is malformed
 * (cp is then left empty). */
static int parse_text(checkpoint_t *cp, const char *text, size_t len) {
  cJSON *root = cJSON_ParseWithLength(text, len);
  const cJSON *all = cJSON_GetObjectItemCaseSensitive(root, "containers");
  const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
  if (!cJSON_IsObject(all) || !cJSON_IsNumber(version) ||
      (version->valueint != 1 && version->valueint != 2)) {
    cJSON_Delete(root);
    return -1;
  }
  const cJSON *c;
  cJSON_ArrayForEach(c, all) {
    if (find(cp, c->string ? c->string : "") || load_entry(cp, c, version->valueint) != 0) {
      cJSON_Delete(root);
      drop_all(cp);
      return -1;
    }
  }
  cJSON_Delete(root);
  return 0;
}

/* Reads the file if there is one. Returns 0, or -1 when it is malformed. */
static int load(checkpoint_t *cp) {
  FILE *f = fopen(cp->path, "rb");
  if (!f) return errno == ENOENT ? 0 : -1;
  char *text = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len + 65536 > cap) {
      cap = cap ? cap * 2 : 65536;
      char *p = cap <= FILE_MAX ? realloc(text, cap + 1) : NULL;
      if (!p) break;
      text = p;
    }
    size_t r = fread(text + len, 1, cap - len, f);
    len += r;
    if (r == 0) break;
  }
  int bad = ferror(f) || !text || cap > FILE_MAX;
  fclose(f);
  int rc = bad ? -1 : parse_text(cp, text, len);
  free(text);
  return rc;
}

checkpoint_t *checkpoint_parse(const char *text, size_t len, int64_t margin_ns) {
  checkpoint_t *cp = calloc(1, sizeof *cp);
  if (!cp) return NULL;
  cp->margin = margin_ns;
  if (parse_text(cp, text, len) != 0) {
    checkpoint_free(cp);
    return NULL;
  }
  return cp;
}

char *checkpoint_text(const checkpoint_t *cp, size_t *len) { return serialise(cp, len); }

/* --- periodic saves, off the loop thread -------------------------------- */

static void save_failed(checkpoint_t *cp, const char *step, int err);
static void maybe_closed(checkpoint_t *cp);

static void save_done(checkpoint_t *cp) {
  free(cp->buf);
  cp->buf = NULL;
  cp->writing = 0;
  maybe_closed(cp);
}

static void on_rename(uv_fs_t *req) {
  checkpoint_t *cp = req->data;
  int r = (int)req->result;
  uv_fs_req_cleanup(req);
  if (r < 0) save_failed(cp, "rename", r);
  else cp->last_error[0] = '\0';
  if (r >= 0) cp->current_at = uv_hrtime();
  save_done(cp);
}

static void on_close(uv_fs_t *req) {
  checkpoint_t *cp = req->data;
  uv_fs_req_cleanup(req);
  if (uv_fs_rename(cp->loop, &cp->req, cp->tmp, cp->path, on_rename) != 0) {
    save_failed(cp, "rename", UV_EIO);
    save_done(cp);
  }
}

static void close_file(checkpoint_t *cp, uv_fs_cb cb) {
  if (uv_fs_close(cp->loop, &cp->req, cp->fd, cb) != 0) {
    save_failed(cp, "close", UV_EIO);
    save_done(cp);
  }
}

static void on_close_after_error(uv_fs_t *req) {
  checkpoint_t *cp = req->data;
  uv_fs_req_cleanup(req);
  save_done(cp);
}

static void on_fsync(uv_fs_t *req) {
  checkpoint_t *cp = req->data;
  int r = (int)req->result;
  uv_fs_req_cleanup(req);
  if (r < 0) {
    save_failed(cp, "fsync", r);
    close_file(cp, on_close_after_error);
    return;
  }
  close_file(cp, on_close);
}

static void on_write(uv_fs_t *req) {
  checkpoint_t *cp = req->data;
  ssize_t r = req->result;
  uv_fs_req_cleanup(req);
  if (r < 0 || (size_t)r != cp->len) {
    save_failed(cp, "write", r < 0 ? (int)r : UV_EIO);
    close_file(cp, on_close_after_error);
    return;
  }
  if (cp->do_fsync) {
    if (uv_fs_fsync(cp->loop, &cp->req, cp->fd, on_fsync) != 0) close_file(cp, on_close_after_error);
  } else {
    close_file(cp, on_close);
  }
}

static void on_open(uv_fs_t *req) {
  checkpoint_t *cp = req->data;
  int r = (int)req->result;
  uv_fs_req_cleanup(req);
  if (r < 0) {
    save_failed(cp, "open", r);
    save_done(cp);
    return;
  }
  cp->fd = r;
  uv_buf_t b = uv_buf_init(cp->buf, (unsigned)cp->len);
  if (uv_fs_write(cp->loop, &cp->req, cp->fd, &b, 1, 0, on_write) != 0)
    close_file(cp, on_close_after_error);
}

static void save_failed(checkpoint_t *cp, const char *step, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s %s: %s", step, cp->tmp, uv_strerror(err));
  if (strcmp(msg, cp->last_error) != 0) /* once per cause, not once per try */
    log_error(NULL, "cannot save cursors (%s); retrying", msg);
  snprintf(cp->last_error, sizeof cp->last_error, "%s", msg);
  cp->dirty = 1;
}

static void on_timer(uv_timer_t *t) {
  checkpoint_t *cp = t->data;
  if (!cp->dirty && !cp->writing && !cp->last_error[0]) cp->current_at = uv_hrtime();
  if (!cp->dirty || cp->writing || cp->closing) return;
  if (!(cp->buf = serialise(cp, &cp->len))) {
    log_error(NULL, "out of memory while saving cursors");
    return;
  }
  cp->dirty = 0;
  cp->writing = 1;
  cp->req.data = cp;
  if (uv_fs_open(cp->loop, &cp->req, cp->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600, on_open) != 0) {
    save_failed(cp, "open", UV_EIO);
    save_done(cp);
  }
}

/* --- public ------------------------------------------------------------- */

double checkpoint_age(const checkpoint_t *cp) {
  if (!cp->current_at) return -1;
  return (double)(uv_hrtime() - cp->current_at) / 1e9;
}

checkpoint_t *checkpoint_open(uv_loop_t *loop, const char *dir, double interval, int do_fsync,
                              int64_t margin_ns, char *err, size_t errlen) {
  checkpoint_t *cp = calloc(1, sizeof *cp);
  if (!cp) goto oom;
  cp->loop = loop;
  cp->margin = margin_ns;
  cp->do_fsync = do_fsync;
  size_t n = strlen(dir) + sizeof FILE_NAME + 16;
  cp->dir = strdup(dir);
  cp->path = malloc(n);
  cp->tmp = malloc(n);
  if (!cp->dir || !cp->path || !cp->tmp) goto oom;
  snprintf(cp->path, n, "%s/%s", dir, FILE_NAME);
  snprintf(cp->tmp, n, "%s/%s.tmp", dir, FILE_NAME);
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "cannot create the state directory %s: %s", dir, strerror(errno));
    goto fail;
  }
  if (access(dir, W_OK | X_OK) != 0) {
    snprintf(err, errlen, "the state directory %s is not writable: %s", dir, strerror(errno));
    goto fail;
  }
  if (load(cp) != 0) {
    char bad[4200];
    snprintf(bad, sizeof bad, "%s.corrupt", cp->path);
    rename(cp->path, bad);
    log_warn(NULL, "the cursor file %s could not be read; kept as %s, starting without cursors",
             cp->path, bad);
  } else if (cp->count) {
    log_info(NULL, "loaded the cursors of %zu containers from %s", cp->count, cp->path);
  }
  uv_timer_init(loop, &cp->timer);
  uvh_opened((uv_handle_t *)&cp->timer);
  cp->timer_open = 1;
  cp->timer.data = cp;
  cp->current_at = uv_hrtime(); /* the file holds what was loaded: every cursor acknowledged */
  uint64_t every = (uint64_t)(interval * 1000);
  uv_timer_start(&cp->timer, on_timer, every ? every : 1, every ? every : 1);
  return cp;
oom:
  snprintf(err, errlen, "out of memory");
fail:
  checkpoint_free(cp);
  return NULL;
}

cursor_t *checkpoint_resume(checkpoint_t *cp, const char *id) {
  cp_entry_t *e = find(cp, id);
  if (!e) return NULL;
  cursor_state_t s;
  cursor_get_state(e->acked, &s);
  cursor_key_t *keys = malloc((s.n_keys ? s.n_keys : 1) * sizeof *keys);
  if (!keys) return NULL;
  size_t n = cursor_keys(e->acked, keys, s.n_keys);
  cursor_t *c = cursor_restore(cp->margin, CURSOR_MAX_KEYS_DEFAULT, &s, keys, n);
  free(keys);
  return c;
}

void checkpoint_ack(checkpoint_t *cp, const batch_t *b) {
  if (!b->n) return;
  cp_entry_t *e = find(cp, b->container->id);
  if (!e) {
    cursor_t *c = cursor_new(cp->margin, CURSOR_MAX_KEYS_DEFAULT);
    if (!c || !(e = add(cp, b->container->id, c))) {
      cursor_free(c);
      log_error(b->container->name, "out of memory: its cursor is not saved");
      return;
    }
  }
  for (size_t i = 0; i < b->n; i++) {
    const batch_rec_t *r = &b->recs[i];
    cursor_key_t k = {.ts = r->ts, .hash = r->hash, .len = r->len, .stream = r->stream};
    cursor_deliver(e->acked, &k, b->floor_ts);
  }
  cp->dirty = 1;
}

void checkpoint_forget(checkpoint_t *cp, const char *id) {
  cp_entry_t **p = &cp->buckets[bucket_of(id)];
  while (*p && strcmp((*p)->id, id) != 0) p = &(*p)->next;
  if (!*p) return;
  cp_entry_t *e = *p;
  *p = e->next;
  cursor_free(e->acked);
  free(e);
  cp->count--;
  cp->dirty = 1;
}

size_t checkpoint_count(const checkpoint_t *cp) { return cp->count; }

static void timer_closed(uv_handle_t *h) {
  checkpoint_t *cp = h->data;
  uvh_closed(h);
  cp->timer_open = 0;
  maybe_closed(cp);
}

static void maybe_closed(checkpoint_t *cp) {
  if (!cp->closing || cp->writing || cp->timer_open || !cp->closed) return;
  void (*cb)(void *) = cp->closed;
  cp->closed = NULL;
  cb(cp->closed_ud);
}

void checkpoint_close(checkpoint_t *cp, void (*closed)(void *), void *ud) {
  if (cp->closing) return;
  cp->closing = 1;
  cp->closed = closed;
  cp->closed_ud = ud;
  uv_timer_stop(&cp->timer);
  uvh_close((uv_handle_t *)&cp->timer, timer_closed);
}

int checkpoint_save_now(checkpoint_t *cp, char *err, size_t errlen) {
  size_t len;
  char *text = serialise(cp, &len);
  if (!text) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  int fd = open(cp->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int rc = -1;
  const char *step = "open";
  if (fd >= 0) {
    step = "write";
    if (write_all(fd, text, len) == 0 && (!cp->do_fsync || (step = "fsync", fsync(fd) == 0))) rc = 0;
    if (close(fd) != 0) rc = -1;
    if (rc == 0 && (step = "rename", rename(cp->tmp, cp->path) != 0)) rc = -1;
  }
  if (rc != 0) snprintf(err, errlen, "cannot save cursors (%s %s): %s", step, cp->tmp, strerror(errno));
  else cp->dirty = 0;
  free(text);
  return rc;
}

void checkpoint_free(checkpoint_t *cp) {
  if (!cp) return;
  drop_all(cp);
  free(cp->buf);
  free(cp->dir);
  free(cp->path);
  free(cp->tmp);
  free(cp);
}
