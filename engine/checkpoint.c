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
 * other stream stamped within the margin before it could be missed).
 *
 * Saving: on the loop, a snapshot of every cursor (its state and a copy of
 * its keys, at most CP_KEYS each); on a libuv threadpool thread, the text
 * and the file (write, fsync, rename, fsync of the folder); back on the
 * loop, the outcome. checkpoint_save_now does the same two steps inline.
 *
 * A file larger than FILE_MAX is read one container at a time (files this
 * engine writes put each container's entry in one piece); an entry larger
 * than ENTRY_MAX keeps its position (newest, floor) but not its keys. */
#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "checkpoint.h"
#include "container.h"
#include "idtable.h"
#include "log.h"
#include "json.h"
#include "handles.h"

#define FILE_NAME "cursors.json"
#define FILE_MAX ((size_t)256 * 1024 * 1024)
#define ENTRY_MAX ((size_t)8 * 1024 * 1024)
#define TOO_LARGE_RETRY_MS 60000
/* Keys kept (and saved) per container: the newest ones; when more were
 * acknowledged, the resume point moves past those that left (cursor.h). */
#define CP_KEYS 16384

typedef struct cp_entry {
  idlink_t link;              /* in the checkpoint's table, by key */
  char id[CONTAINER_KEY_MAX]; /* the container's key (container.h) */
  cursor_t *acked;
  uint64_t missing_since; /* uv_now when a list first lacked it; 0: listed */
} cp_entry_t;

/* One container in a save's snapshot. */
typedef struct snap_entry {
  char id[CONTAINER_KEY_MAX]; /* the key as written */
  cursor_state_t s;
  cursor_key_t *keys;
  size_t n;
} snap_entry_t;

/* A save: the snapshot taken on the loop, and what the thread found. */
typedef struct save_job {
  uv_work_t work;
  struct checkpoint *cp;        /* read on the loop only */
  const char *dir, *path, *tmp; /* the checkpoint's, unchanged while the job runs */
  int do_fsync;
  snap_entry_t *e;
  size_t n;
  size_t bytes; /* the text's size */
  int rc;       /* 0, -1 (error), 1 (over FILE_MAX: not written) */
  char error[200];
} save_job_t;

struct checkpoint {
  uv_loop_t *loop;
  char *dir, *path, *tmp;
  int64_t margin;
  int do_fsync;
  idtable_t entries;             /* cp_entry_t by container key (entries.count) */
  char plain[CONTAINER_KEY_MAX]; /* "<first daemon>/": a key read without a
                             daemon is that daemon's; "" when not set */
  int write_plain;               /* write that daemon's keys without it (the one-daemon
                             form: the file stays as older engines wrote it) */
  int dirty;
  uv_timer_t timer;
  int timer_open;
  int writing;             /* a save job in flight */
  uint64_t no_save_before; /* uv_now: after a refusal to grow past FILE_MAX */
  char last_error[200];
  uint64_t current_at; /* uv_hrtime when the file last held everything; 0: never */
  int closing;
  void (*closed)(void *);
  void *closed_ud;
};

static cp_entry_t *entry_of(idlink_t *l) { return l ? IDTABLE_ENTRY(l, cp_entry_t, link) : NULL; }

static cp_entry_t *find(const checkpoint_t *cp, const char *id) {
  return entry_of(idtable_find(&cp->entries, id));
}

/* for (cp_entry_t *e = first(cp); e; e = next(cp, e)) */
static cp_entry_t *first(const checkpoint_t *cp) { return entry_of(idtable_first(&cp->entries)); }
static cp_entry_t *next(const checkpoint_t *cp, const cp_entry_t *e) {
  return entry_of(idtable_next(&cp->entries, &e->link));
}

/* The key of a container as the file names it (key: CONTAINER_KEY_MAX
 * bytes): a name without a daemon belongs to the first one. */
static void key_of(const checkpoint_t *cp, const char *name, char *key) {
  if (cp->plain[0] && !strchr(name, '/'))
    snprintf(key, CONTAINER_KEY_MAX, "%.64s%.64s", cp->plain, name);
  else snprintf(key, CONTAINER_KEY_MAX, "%s", name);
}

static cp_entry_t *add(checkpoint_t *cp, const char *id, cursor_t *acked) {
  cp_entry_t *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  key_of(cp, id, e->id);
  e->acked = acked;
  idtable_add(&cp->entries, &e->link, e->id);
  return e;
}

/* --- the file ----------------------------------------------------------- */

static int cmp_snap(const void *a, const void *b) {
  return strcmp(((const snap_entry_t *)a)->id, ((const snap_entry_t *)b)->id);
}

static void snap_free(snap_entry_t *e, size_t n) {
  for (size_t i = 0; e && i < n; i++) free(e[i].keys);
  free(e);
}

/* Copies every cursor that holds something, in id order (so the same
 * cursors always give the same text). Returns 0, or -1 when out of memory. */
static int snapshot(const checkpoint_t *cp, snap_entry_t **out, size_t *n_out) {
  size_t count = cp->entries.count;
  snap_entry_t *e = calloc(count ? count : 1, sizeof *e);
  size_t n = 0;
  if (!e) return -1;
  for (const cp_entry_t *c = first(cp); c && n < count; c = next(cp, c)) {
    snap_entry_t *s = &e[n];
    cursor_get_state(c->acked, &s->s);
    if (!s->s.any) continue;
    size_t plen = strlen(cp->plain);
    const char *written =
        cp->write_plain && plen && strncmp(c->id, cp->plain, plen) == 0 ? c->id + plen : c->id;
    snprintf(s->id, sizeof s->id, "%s", written);
    if (!(s->keys = malloc((s->s.n_keys ? s->s.n_keys : 1) * sizeof *s->keys))) {
      snap_free(e, n);
      return -1;
    }
    s->n = cursor_keys(c->acked, s->keys, s->s.n_keys);
    n++;
  }
  qsort(e, n, sizeof *e, cmp_snap);
  *out = e;
  *n_out = n;
  return 0;
}

/* The file's text for a snapshot, into t. Returns 0, or -1 when out of
 * memory. Any thread. */
static int snap_text(const snap_entry_t *e, size_t n, strbuf_t *t) {
  char num[200];
  int ok = strbuf_add(t, "{\"version\":2,\"containers\":{", 27) == 0;
  for (size_t i = 0; ok && i < n; i++) {
    const cursor_state_t *s = &e[i].s;
    int len;
    ok =
        (i == 0 || strbuf_add(t, ",", 1) == 0) && json_add_string(t, e[i].id, strlen(e[i].id)) == 0;
    if (s->evicted)
      len = snprintf(num, sizeof num,
                     ":{\"newest\":\"%" PRId64 "\",\"floor\":\"%" PRId64 "\",\"evicted\":\"%" PRId64
                     "\",\"keys\":[",
                     s->newest, s->floor, s->evicted_max);
    else
      len = snprintf(num, sizeof num,
                     ":{\"newest\":\"%" PRId64 "\",\"floor\":\"%" PRId64
                     "\",\"evicted\":null,\"keys\":[",
                     s->newest, s->floor);
    ok = ok && strbuf_add(t, num, (size_t)len) == 0;
    for (size_t k = 0; ok && k < e[i].n; k++) {
      const cursor_key_t *key = &e[i].keys[k];
      len = snprintf(num, sizeof num, "%s\"%" PRId64 ",%u,%u,%016" PRIx64 "\"", k ? "," : "",
                     key->ts, (unsigned)key->stream, (unsigned)key->len, key->hash);
      ok = strbuf_add(t, num, (size_t)len) == 0;
    }
    ok = ok && strbuf_add(t, "]}", 2) == 0;
  }
  return ok && strbuf_add(t, "}}", 2) == 0 ? 0 : -1;
}

/* Serialises every cursor. Returns a malloc'ed text, or NULL when out of
 * memory. */
static char *serialise(const checkpoint_t *cp, size_t *len) {
  snap_entry_t *e;
  size_t n;
  strbuf_t t = {0};
  if (snapshot(cp, &e, &n) != 0) return NULL;
  int rc = snap_text(e, n, &t);
  snap_free(e, n);
  if (rc != 0 || strbuf_add(&t, "", 1) != 0) { /* the terminating NUL */
    strbuf_free(&t);
    return NULL;
  }
  *len = t.len - 1;
  return t.data;
}

/* Writes text to tmp, fsyncs it when asked, renames it over path and then
 * fsyncs the folder (so the rename survives a power loss). Returns 0, or -1
 * with a message in err. Blocking; any thread. */
static int write_file(const char *dir, const char *path, const char *tmp, int do_fsync,
                      const char *text, size_t len, char *err, size_t errlen) {
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const char *step = "open", *what = tmp;
  int rc = -1;
  if (fd >= 0) {
    step = "write";
    if (write_all(fd, text, len) == 0 && (!do_fsync || (step = "fsync", fsync(fd) == 0))) rc = 0;
    if (close(fd) != 0 && rc == 0) step = "close", rc = -1;
    if (rc == 0 && (step = "rename", rename(tmp, path) != 0)) rc = -1;
    if (rc == 0 && do_fsync) {
      int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      step = "fsync", what = dir;
      if (dfd < 0 || fsync(dfd) != 0) rc = -1;
      if (dfd >= 0) close(dfd);
    }
  }
  if (rc != 0) snprintf(err, errlen, "%s %s: %s", step, what, strerror(errno));
  return rc;
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

/* A container id as the file may hold it: 1 to 64 printable ASCII
 * characters, no quote or backslash (so it is written back as it is). */
static int plain_id(const char *id) {
  size_t n = 0;
  for (; id && id[n]; n++)
    if (id[n] < 0x21 || id[n] > 0x7e || id[n] == '"' || id[n] == '\\') return 0;
  return n >= 1 && n < CONTAINER_KEY_MAX;
}

/* Loads one container's cursor from a file of the given version. Returns 0
 * or -1 (malformed). */
static int load_entry(checkpoint_t *cp, const cJSON *c, int version) {
  cursor_state_t s = {0};
  s.any = 1;
  const cJSON *ev = cJSON_GetObjectItemCaseSensitive(c, "evicted");
  if (!plain_id(c->string) || parse_i64(cJSON_GetObjectItemCaseSensitive(c, "newest"), &s.newest) ||
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
  cursor_t *cur = cursor_restore(cp->margin, CP_KEYS, &s, keys, n);
  free(keys);
  if (!cur || !add(cp, c->string, cur)) {
    cursor_free(cur);
    return -1;
  }
  return 0;
}

static void drop_all(checkpoint_t *cp) {
  for (cp_entry_t *e = first(cp), *after; e; e = after) {
    after = next(cp, e);
    idtable_remove(&cp->entries, &e->link);
    cursor_free(e->acked);
    free(e);
  }
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
    char key[CONTAINER_KEY_MAX];
    key_of(cp, c->string ? c->string : "", key);
    if (find(cp, key) || load_entry(cp, c, version->valueint) != 0) {
      cJSON_Delete(root);
      drop_all(cp);
      return -1;
    }
  }
  cJSON_Delete(root);
  return 0;
}

/* The decimal string after "name":" in s[0..n), into out. Returns 0, 1 when
 * name is not there, or -1 when its value is not a number. */
static int scalar_in(const char *s, size_t n, const char *name, int64_t *out) {
  char pat[32], num[32];
  int plen = snprintf(pat, sizeof pat, "\"%s\":\"", name);
  const char *v = memmem(s, n, pat, (size_t)plen);
  if (!v) return 1;
  v += plen;
  const char *end = memchr(v, '"', (size_t)(s + n - v));
  if (!end || end == v || (size_t)(end - v) >= sizeof num) return -1;
  memcpy(num, v, (size_t)(end - v));
  num[end - v] = '\0';
  char *stop;
  errno = 0;
  long long x = strtoll(num, &stop, 10);
  if (errno || *stop) return -1;
  *out = x;
  return 0;
}

/* Loads one container's entry, text[0..n) = "<id>":{...}, from a large file.
 * One larger than ENTRY_MAX keeps its position but not its keys (it resumes
 * right after its newest line). Returns 0 or -1. */
static int load_large_entry(checkpoint_t *cp, const char *text, size_t n, const char *id) {
  char key[CONTAINER_KEY_MAX];
  key_of(cp, id, key);
  if (!plain_id(id) || find(cp, key)) return -1;
  if (n <= ENTRY_MAX) {
    char *obj = malloc(n + 2);
    if (!obj) return -1;
    obj[0] = '{';
    memcpy(obj + 1, text, n);
    obj[n + 1] = '}';
    cJSON *root = cJSON_ParseWithLength(obj, n + 2);
    free(obj);
    int rc = root && root->child && !root->child->next ? load_entry(cp, root->child, 2) : -1;
    cJSON_Delete(root);
    return rc;
  }
  cursor_state_t s = {0};
  int ev = scalar_in(text, n, "evicted", &s.evicted_max);
  if (scalar_in(text, n, "newest", &s.newest) != 0 || scalar_in(text, n, "floor", &s.floor) != 0 ||
      ev < 0)
    return -1;
  s.any = 1;
  if (ev != 0 || s.evicted_max < s.newest) s.evicted_max = s.newest;
  s.evicted = 1;
  cursor_t *cur = cursor_restore(cp->margin, CP_KEYS, &s, NULL, 0);
  if (!cur || !add(cp, id, cur)) {
    cursor_free(cur);
    return -1;
  }
  return 0;
}

/* Reads a file larger than FILE_MAX one container at a time, without a
 * tree of the whole: such a file can only come from a writer of this
 * format, {"containers":{"<id>":{...},...},"version":2} or {"version":2,
 * "containers":{...}}, without spaces and without braces inside an entry.
 * Returns 0, or -1 when the text is not laid out so. */
static int parse_large(checkpoint_t *cp, const char *text, size_t len) {
  static const char head1[] = "{\"containers\":{", head2[] = "{\"version\":2,\"containers\":{";
  static const char tail1[] = "},\"version\":2}", tail2[] = "}}";
  const char *p = text, *end = text + len, *tail;
  size_t tlen;
  if (len > sizeof head1 && memcmp(text, head1, sizeof head1 - 1) == 0) {
    p += sizeof head1 - 1, tail = tail1, tlen = sizeof tail1 - 1;
  } else if (len > sizeof head2 && memcmp(text, head2, sizeof head2 - 1) == 0) {
    p += sizeof head2 - 1, tail = tail2, tlen = sizeof tail2 - 1;
  } else {
    return -1;
  }
  while (end > p && (end[-1] == '\n' || end[-1] == ' ')) end--;
  if ((size_t)(end - p) < tlen || memcmp(end - tlen, tail, tlen) != 0) return -1;
  end -= tlen; /* p..end: the entries, comma-separated */
  while (p < end) {
    char id[CONTAINER_KEY_MAX];
    const char *q = p + 1, *close;
    if (*p != '"') return -1;
    while (q < end && *q != '"' && *q != '\\') q++;
    if (q >= end || *q != '"' || q - p - 1 >= CONTAINER_KEY_MAX || q + 2 >= end || q[1] != ':' ||
        q[2] != '{')
      return -1;
    memcpy(id, p + 1, (size_t)(q - p - 1));
    id[q - p - 1] = '\0';
    for (close = q + 3; close < end && *close != '}'; close++) /* skip strings */
      if (*close == '"')
        for (close++; close < end && *close != '"'; close++)
          if (*close == '\\') close++;
    if (close >= end || load_large_entry(cp, p, (size_t)(close + 1 - p), id) != 0) return -1;
    p = close + 1;
    if (p < end && *p++ != ',') return -1;
  }
  return 0;
}

/* Reads the file if there is one. Returns 0, or -1 when it is malformed. */
static int load(checkpoint_t *cp) {
  int fd = open(cp->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : -1;
  struct stat st;
  int rc = -1;
  if (fstat(fd, &st) != 0 || st.st_size < 0) {
    close(fd);
    return -1;
  }
  size_t len = (size_t)st.st_size;
  void *map = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
  close(fd);
  if (map == MAP_FAILED) return parse_text(cp, "", 0);
  if (len <= FILE_MAX) {
    rc = parse_text(cp, map, len);
  } else {
    log_warn(NULL,
             "the cursor file %s holds %zu MiB, over the limit of %zu MiB: reading it one "
             "container at a time (a container's keys over 8 MiB are left out: it resumes after "
             "its newest line); it is written back smaller",
             cp->path, len >> 20, FILE_MAX >> 20);
    if ((rc = parse_large(cp, map, len)) != 0) drop_all(cp);
    else cp->dirty = 1;
  }
  munmap(map, len);
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

checkpoint_t *checkpoint_parse_large(const char *text, size_t len, int64_t margin_ns) {
  checkpoint_t *cp = calloc(1, sizeof *cp);
  if (!cp) return NULL;
  cp->margin = margin_ns;
  if (parse_large(cp, text, len) != 0) {
    checkpoint_free(cp);
    return NULL;
  }
  return cp;
}

char *checkpoint_text(const checkpoint_t *cp, size_t *len) { return serialise(cp, len); }

/* --- periodic saves, off the loop thread -------------------------------- */

static void maybe_closed(checkpoint_t *cp);

/* On a threadpool thread: the text and the file. */
static void save_work(uv_work_t *w) {
  save_job_t *j = w->data;
  strbuf_t t = {0};
  if (snap_text(j->e, j->n, &t) != 0) {
    j->rc = -1;
    snprintf(j->error, sizeof j->error, "out of memory");
  } else if ((j->bytes = t.len) > FILE_MAX) {
    j->rc = 1;
  } else {
    j->rc =
        write_file(j->dir, j->path, j->tmp, j->do_fsync, t.data, t.len, j->error, sizeof j->error);
  }
  strbuf_free(&t);
}

/* Back on the loop: the outcome. */
static void save_done(uv_work_t *w, int status) {
  save_job_t *j = w->data;
  checkpoint_t *cp = j->cp;
  if (status == 0 && j->rc == 0) {
    cp->last_error[0] = '\0';
    cp->current_at = uv_hrtime();
  } else {
    char msg[sizeof cp->last_error];
    if (status != 0) snprintf(msg, sizeof msg, "%s", uv_strerror(status));
    else snprintf(msg, sizeof msg, "%s", j->error);
    if (j->rc == 1) {
      snprintf(msg, sizeof msg, "too large");
      if (strcmp(msg, cp->last_error) != 0)
        log_warn(NULL,
                 "the cursors would take %zu MiB, over the limit of %zu MiB for %s: the "
                 "file is not grown (it keeps the last cursors that fitted) until containers "
                 "are removed",
                 j->bytes >> 20, FILE_MAX >> 20, cp->path);
      cp->no_save_before = uv_now(cp->loop) + TOO_LARGE_RETRY_MS;
    } else if (strcmp(msg, cp->last_error) != 0) { /* once per cause, not once per try */
      log_error(NULL, "cannot save cursors (%s); retrying", msg);
    }
    snprintf(cp->last_error, sizeof cp->last_error, "%s", msg);
    cp->dirty = 1;
  }
  snap_free(j->e, j->n);
  free(j);
  cp->writing = 0;
  maybe_closed(cp);
}

static void on_timer(uv_timer_t *t) {
  checkpoint_t *cp = t->data;
  if (!cp->dirty && !cp->writing && !cp->last_error[0]) cp->current_at = uv_hrtime();
  if (!cp->dirty || cp->writing || cp->closing || uv_now(cp->loop) < cp->no_save_before) return;
  save_job_t *j = calloc(1, sizeof *j);
  if (!j || snapshot(cp, &j->e, &j->n) != 0) {
    free(j);
    log_error(NULL, "out of memory while saving cursors");
    return;
  }
  j->cp = cp;
  j->dir = cp->dir;
  j->path = cp->path;
  j->tmp = cp->tmp;
  j->do_fsync = cp->do_fsync;
  j->work.data = j;
  if (uv_queue_work(cp->loop, &j->work, save_work, save_done) != 0) {
    snap_free(j->e, j->n);
    free(j);
    return;
  }
  cp->dirty = 0;
  cp->writing = 1;
}

/* --- public ------------------------------------------------------------- */

double checkpoint_age(const checkpoint_t *cp) {
  if (!cp->current_at) return -1;
  return (double)(uv_hrtime() - cp->current_at) / 1e9;
}

checkpoint_t *checkpoint_open(uv_loop_t *loop, const char *dir, double interval, int do_fsync,
                              int64_t margin_ns, const char *first_daemon, int write_plain,
                              char *err, size_t errlen) {
  checkpoint_t *cp = calloc(1, sizeof *cp);
  if (!cp) goto oom;
  snprintf(cp->plain, sizeof cp->plain, "%.63s/", first_daemon);
  cp->write_plain = write_plain;
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
  } else if (cp->entries.count) {
    log_info(NULL, "loaded the cursors of %zu containers from %s", cp->entries.count, cp->path);
  }
  uv_timer_init(loop, &cp->timer);
  handles_opened((uv_handle_t *)&cp->timer);
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
  cp_entry_t *e = find(cp, b->container->key);
  if (!e) {
    cursor_t *c = cursor_new(cp->margin, CP_KEYS);
    if (!c || !(e = add(cp, b->container->key, c))) {
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
  e->missing_since = 0;
  cp->dirty = 1;
}

/* Unlinks and frees e. */
static void unlink_entry(checkpoint_t *cp, cp_entry_t *e) {
  idtable_remove(&cp->entries, &e->link);
  cursor_free(e->acked);
  free(e);
  cp->dirty = 1;
}

void checkpoint_forget(checkpoint_t *cp, const char *id) {
  cp_entry_t *e = find(cp, id);
  if (e) unlink_entry(cp, e);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void checkpoint_reconcile(checkpoint_t *cp, const char *prefix, const char **ids, size_t n,
                          double grace) {
  size_t plen = strlen(prefix);
  uint64_t now = uv_now(cp->loop) + 1, grace_ms = (uint64_t)(grace * 1000); /* 0 means listed */
  size_t pruned = 0;
  qsort(ids, n, sizeof *ids, cmp_str);
  for (cp_entry_t *e = first(cp), *after; e; e = after) {
    after = next(cp, e);
    const char *id = e->id;
    if (strncmp(id, prefix, plen) != 0) continue; /* another daemon's */
    if (bsearch(&id, ids, n, sizeof *ids, cmp_str)) {
      e->missing_since = 0;
    } else if (!e->missing_since) {
      e->missing_since = now;
    } else if (now - e->missing_since >= grace_ms) {
      unlink_entry(cp, e);
      pruned++;
    }
  }
  if (pruned)
    log_info(NULL, "forgot the cursors of %zu containers the daemon no longer has", pruned);
}

size_t checkpoint_count(const checkpoint_t *cp) { return cp->entries.count; }

static void timer_closed(uv_handle_t *h) {
  checkpoint_t *cp = h->data;
  handles_closed(h);
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
  handles_close((uv_handle_t *)&cp->timer, timer_closed);
}

int checkpoint_save_now(checkpoint_t *cp, char *err, size_t errlen) {
  size_t len;
  char *text = serialise(cp, &len);
  if (!text) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  char why[200];
  int rc = 0;
  if (len > FILE_MAX)
    log_warn(NULL, "the cursors would take %zu MiB, over the limit of %zu MiB: %s is not grown",
             len >> 20, FILE_MAX >> 20, cp->path);
  else if ((rc = write_file(cp->dir, cp->path, cp->tmp, cp->do_fsync, text, len, why,
                            sizeof why)) != 0)
    snprintf(err, errlen, "cannot save cursors (%s)", why);
  else cp->dirty = 0;
  free(text);
  return rc;
}

void checkpoint_free(checkpoint_t *cp) {
  if (!cp) return;
  drop_all(cp);
  free(cp->dir);
  free(cp->path);
  free(cp->tmp);
  free(cp);
}
