/* filtertest.c - `engine test`: a pipeline's filters on test cases, on a
 * simulated clock (see filtertest.h). Runs on the caller's thread, which is
 * the pipeline thread of each case's simulated run. */
#include "filtertest.h"

#include <cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "config.h"
#include "container.h"
#include "decode.h"
#include "output.h"
#include "pipeline_internal.h"
#include "timestamp.h"

#define SIM_START 1000000000000LL        /* the simulated monotonic clock at start */
#define WALL_START 1704067200000000000LL /* 2024-01-01T00:00:00Z */
#define MAX_CONTAINERS 256
#define MAX_LABELS 64

/* One line of a case file. */
typedef struct step {
  unsigned long line;
  cJSON *json;
} step_t;

typedef struct tcase {
  char *name;
  unsigned long line; /* of its "case" line, or 1 */
  step_t *steps;
  size_t n_steps, cap;
} tcase_t;

/* One case's run. */
typedef struct run {
  const char *file; /* the case file, for messages */
  pipeline_t *p;
  container_t *containers[MAX_CONTAINERS];
  size_t n_containers;
  FILE **captures; /* one per output */
  size_t n_outputs;
  int64_t seq; /* default times are distinct */
} run_t;

static void free_cases(tcase_t *cases, size_t n) {
  for (size_t i = 0; i < n; i++) {
    for (size_t k = 0; k < cases[i].n_steps; k++) cJSON_Delete(cases[i].steps[k].json);
    free(cases[i].steps);
    free(cases[i].name);
  }
  free(cases);
}

/* Reads the case file. Returns 0 with the cases, or -1 after a message. */
static int read_cases(const char *path, tcase_t **out, size_t *n_out) {
  FILE *in = fopen(path, "rb");
  char *buf = NULL;
  size_t cap = 0, n = 0, ncap = 0;
  unsigned long lineno = 0;
  tcase_t *cases = NULL;
  int rc = 0;

  if (in == NULL) {
    fprintf(stderr, "engine: %s: cannot read the test cases: %s\n", path, strerror(errno));
    return -1;
  }
  while (rc == 0 && getline(&buf, &cap, in) >= 0) {
    const char *s = buf;
    cJSON *j;
    lineno++;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
    if (*s == '\0' || *s == '#') continue;
    j = cJSON_Parse(s);
    if (j == NULL || !cJSON_IsObject(j)) {
      fprintf(stderr, "engine: %s:%lu: not a JSON object\n", path, lineno);
      cJSON_Delete(j);
      rc = -1;
      break;
    }
    cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "case");
    if (name != NULL || n == 0) {
      if (name != NULL && !cJSON_IsString(name)) {
        fprintf(stderr, "engine: %s:%lu: \"case\" must be a string (the case's name)\n", path,
                lineno);
        cJSON_Delete(j);
        rc = -1;
        break;
      }
      if (n == ncap) {
        ncap = ncap ? 2 * ncap : 8;
        tcase_t *grown = realloc(cases, ncap * sizeof *cases);
        if (grown == NULL) {
          cJSON_Delete(j);
          rc = -1;
          break;
        }
        cases = grown;
      }
      memset(&cases[n], 0, sizeof cases[n]);
      cases[n].name = strdup(name ? name->valuestring : path);
      cases[n].line = name ? lineno : 1;
      n++;
      if (name != NULL) {
        cJSON_Delete(j);
        continue;
      }
    }
    tcase_t *c = &cases[n - 1];
    if (c->n_steps == c->cap) {
      c->cap = c->cap ? 2 * c->cap : 16;
      step_t *grown = realloc(c->steps, c->cap * sizeof *c->steps);
      if (grown == NULL) {
        cJSON_Delete(j);
        rc = -1;
        break;
      }
      c->steps = grown;
    }
    c->steps[c->n_steps].line = lineno;
    c->steps[c->n_steps].json = j;
    c->n_steps++;
  }
  free(buf);
  fclose(in);
  if (rc < 0) {
    free_cases(cases, n);
    return -1;
  }
  *out = cases;
  *n_out = n;
  return 0;
}

/* Checks that the object j has only the keys listed (NULL-terminated). */
static int only_keys(const cJSON *j, const char *const *keys, const char *file,
                     unsigned long line) {
  const cJSON *it;
  cJSON_ArrayForEach(it, j) {
    size_t k;
    for (k = 0; keys[k] != NULL && strcmp(keys[k], it->string) != 0; k++)
      ;
    if (keys[k] == NULL) {
      fprintf(stderr, "engine: %s:%lu: unknown key \"%s\"\n", file, line, it->string);
      return -1;
    }
  }
  return 0;
}

static const char *opt_string(const cJSON *j, const char *key, const char *def) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  return cJSON_IsString(v) ? v->valuestring : def;
}

/* The container an input record names (made on first use). */
static container_t *container_of(run_t *r, const cJSON *rec) {
  const char *name = opt_string(rec, "name", "app");
  const char *labels[MAX_LABELS];
  char id[300], *kv[MAX_LABELS];
  size_t n = 0, i;
  container_t *c;
  const cJSON *l;

  for (i = 0; i < r->n_containers; i++)
    if (strcmp(r->containers[i]->name, name) == 0) return r->containers[i];
  if (r->n_containers == MAX_CONTAINERS) return NULL;
  snprintf(id, sizeof id, "id-%s", name);
  cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(rec, "labels")) {
    if (n == MAX_LABELS || !cJSON_IsString(l)) break;
    size_t len = strlen(l->string) + strlen(l->valuestring) + 2;
    if ((kv[n] = malloc(len)) == NULL) break;
    snprintf(kv[n], len, "%s=%s", l->string, l->valuestring);
    labels[n] = kv[n];
    n++;
  }
  c = container_new(opt_string(rec, "id", id), name, opt_string(rec, "image", "img"), labels, n, 0);
  for (i = 0; i < n; i++) free(kv[i]);
  if (c != NULL) r->containers[r->n_containers++] = c;
  return c;
}

/* {"in": RECORD or [RECORD, ...]}: one batch through the filters. */
static int step_in(run_t *r, const cJSON *in, unsigned long line) {
  static const char *const keys[] = {"line",   "name",   "id",   "image",
                                     "labels", "stream", "time", NULL};
  const cJSON *rec;
  batch_t *b = NULL;
  int single = cJSON_IsObject(in);

  if (!single && !cJSON_IsArray(in)) {
    fprintf(stderr, "engine: %s:%lu: \"in\" must be a record or a list of records\n", r->file,
            line);
    return -1;
  }
  for (rec = single ? in : in->child; rec != NULL; rec = single ? NULL : rec->next) {
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(rec, "line");
    const char *stream = opt_string(rec, "stream", "stdout"), *time = opt_string(rec, "time", NULL);
    container_t *c;
    int64_t ts;
    size_t used;

    if (!cJSON_IsObject(rec) || only_keys(rec, keys, r->file, line) < 0) {
      if (!cJSON_IsObject(rec))
        fprintf(stderr, "engine: %s:%lu: an input record must be an object\n", r->file, line);
      goto bad;
    }
    if (!cJSON_IsString(text)) {
      fprintf(stderr, "engine: %s:%lu: an input record needs \"line\" (a string)\n", r->file, line);
      goto bad;
    }
    if (strcmp(stream, "stdout") != 0 && strcmp(stream, "stderr") != 0) {
      fprintf(stderr, "engine: %s:%lu: \"stream\" must be \"stdout\" or \"stderr\"\n", r->file,
              line);
      goto bad;
    }
    if (time == NULL) ts = WALL_START + (r->p->sim_now - SIM_START) + r->seq++;
    else if (ts_parse(time, strlen(time), &ts, &used) < 0 || used != strlen(time)) {
      fprintf(stderr, "engine: %s:%lu: \"time\" is not an RFC 3339 time: %s\n", r->file, line,
              time);
      goto bad;
    }
    if ((c = container_of(r, rec)) == NULL) {
      fprintf(stderr, "engine: %s:%lu: too many containers (or out of memory)\n", r->file, line);
      goto bad;
    }
    if (b != NULL && b->container != c) {
      fprintf(stderr, "engine: %s:%lu: the records of one \"in\" are one batch: one container\n",
              r->file, line);
      goto bad;
    }
    if ((b == NULL && (b = batch_new(c)) == NULL) ||
        batch_add(b, ts, strcmp(stream, "stderr") == 0 ? DECODE_STDERR : DECODE_STDOUT, 0,
                  text->valuestring, strlen(text->valuestring)) < 0) {
      fprintf(stderr, "engine: out of memory\n");
      goto bad;
    }
  }
  if (b != NULL) {
    pl_process_batch(r->p, r->p->prog, b);
    batch_free(b);
  }
  return 0;
bad:
  batch_free(b);
  return -1;
}

/* The index of the output named name, or -1. */
static int output_index(const run_t *r, const char *name) {
  for (size_t i = 0; i < r->n_outputs; i++)
    if (strcmp(r->p->prog->outputs[i]->name, name) == 0) return (int)i;
  return -1;
}

/* Replaces the (unopened) outputs by JSON-lines outputs into temporary
 * files. Returns 0 or -1. */
static int capture_outputs(run_t *r) {
  program_t *g = r->p->prog;

  r->captures = calloc(g->n_outputs ? g->n_outputs : 1, sizeof(FILE *));
  if (r->captures == NULL) return -1;
  for (size_t i = 0; i < g->n_outputs; i++) {
    output_t *old = g->outputs[i], *o;
    if ((r->captures[i] = tmpfile()) == NULL) return -1;
    r->n_outputs = i + 1;
    if ((o = output_capture_new(old->name, fileno(r->captures[i]))) == NULL) return -1;
    o->routed_only = old->routed_only;
    output_free(old);
    g->outputs[i] = o;
  }
  return 0;
}

/* The records output i got, as a JSON array (NULL when out of memory). */
static cJSON *captured(run_t *r, size_t i) {
  cJSON *arr = cJSON_CreateArray();
  char *line = NULL;
  size_t cap = 0;
  FILE *f = r->captures[i];

  rewind(f);
  while (arr != NULL && getline(&line, &cap, f) >= 0) {
    cJSON *j = cJSON_Parse(line);
    if (j != NULL) cJSON_AddItemToArray(arr, j);
  }
  free(line);
  return arr;
}

/* Prints "  - TEXT" or "  + TEXT" (JSON of j, or "nothing") to out. */
static void show(FILE *out, char sign, const cJSON *j) {
  char *text = j ? cJSON_PrintUnformatted(j) : NULL;
  fprintf(out, "  %c %s\n", sign, text ? text : "nothing");
  free(text);
}

/* Compares what output i got with the expected records. Returns the
 * number of differences (printed to out). */
static int compare(FILE *out, run_t *r, size_t i, const cJSON *want) {
  cJSON *got = captured(r, i);
  const char *name = r->p->prog->outputs[i]->name;
  int n_want = cJSON_GetArraySize(want), n_got = got ? cJSON_GetArraySize(got) : 0, diffs = 0;

  for (int k = 0; k < n_want || k < n_got; k++) {
    const cJSON *w = cJSON_GetArrayItem(want, k), *g = got ? cJSON_GetArrayItem(got, k) : NULL;
    const cJSON *field;
    if (g == NULL) {
      fprintf(out, "  output %s, record %d: missing\n", name, k + 1);
      show(out, '-', w);
      diffs++;
      continue;
    }
    if (w == NULL) {
      fprintf(out, "  output %s, record %d: not expected\n", name, k + 1);
      show(out, '+', g);
      diffs++;
      continue;
    }
    cJSON_ArrayForEach(field, w) {
      const cJSON *have = cJSON_GetObjectItemCaseSensitive(g, field->string);
      if (have != NULL ? cJSON_Compare(field, have, 1) : cJSON_IsNull(field))
        continue; /* null: the record must not have the field */
      fprintf(out, "  output %s, record %d, %s:\n", name, k + 1, field->string);
      show(out, '-', field);
      show(out, '+', have);
      diffs++;
    }
  }
  cJSON_Delete(got);
  return diffs;
}

/* Runs one case. Returns 0 (passed), 1 (failed) or 2 (a bad case or
 * pipeline, after a message). */
static int run_case(const char *pipeline, const char *lua_dir, const char *file,
                    const tcase_t *tc) {
  static const char *const out_keys[] = {"out", "to", NULL};
  run_t r = {.file = file};
  config_t cfg;
  char err[PIPELINE_ERR_MAX];
  cJSON **want = NULL;
  int *compared = NULL, rc = 0, diffs = 0;
  size_t i;

  config_defaults(&cfg);
  r.p = pl_load(pipeline, NULL, lua_dir, 1, &cfg, err, sizeof err);
  if (r.p == NULL) {
    fprintf(stderr, "engine: %s\n", err);
    config_free(&cfg);
    return 2;
  }
  if (capture_outputs(&r) < 0 || r.n_outputs == 0 ||
      (want = calloc(r.n_outputs, sizeof(cJSON *))) == NULL ||
      (compared = calloc(r.n_outputs, sizeof *compared)) == NULL) {
    fprintf(stderr, "engine: out of memory\n");
    rc = 2;
    goto done;
  }
  for (i = 0; i < r.n_outputs; i++)
    if ((want[i] = cJSON_CreateArray()) == NULL) {
      rc = 2;
      goto done;
    }
  compared[0] = 1;
  pl_sim_start(r.p, SIM_START);
  for (i = 0; i < tc->n_steps && rc == 0; i++) {
    const step_t *s = &tc->steps[i];
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(s->json, "in")) != NULL) {
      static const char *const keys[] = {"in", NULL};
      if (only_keys(s->json, keys, file, s->line) < 0 || step_in(&r, v, s->line) < 0) rc = 2;
    } else if ((v = cJSON_GetObjectItemCaseSensitive(s->json, "advance")) != NULL) {
      static const char *const keys[] = {"advance", NULL};
      if (only_keys(s->json, keys, file, s->line) < 0) {
        rc = 2;
      } else if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e9) {
        fprintf(stderr, "engine: %s:%lu: \"advance\" must be a number of seconds from 0\n", file,
                s->line);
        rc = 2;
      } else if (pl_sim_advance(r.p, r.p->sim_now + (int64_t)(v->valuedouble * 1e9)) < 0) {
        fprintf(stderr, "engine: %s:%lu: the timers fell due more than %ld times in one advance\n",
                file, s->line, PL_SIM_MAX_ROUNDS);
        rc = 2;
      }
    } else if ((v = cJSON_GetObjectItemCaseSensitive(s->json, "out")) != NULL) {
      const char *to = opt_string(s->json, "to", r.p->prog->outputs[0]->name);
      int k = output_index(&r, to);
      const cJSON *rec;
      if (only_keys(s->json, out_keys, file, s->line) < 0) {
        rc = 2;
        break;
      }
      if (k < 0) {
        fprintf(stderr, "engine: %s:%lu: the pipeline has no output named \"%s\"\n", file, s->line,
                to);
        rc = 2;
        break;
      }
      compared[k] = 1;
      if (cJSON_IsObject(v)) {
        cJSON_AddItemToArray(want[k], cJSON_Duplicate(v, 1));
      } else if (cJSON_IsArray(v)) {
        cJSON_ArrayForEach(rec, v) { cJSON_AddItemToArray(want[k], cJSON_Duplicate(rec, 1)); }
      } else {
        fprintf(stderr, "engine: %s:%lu: \"out\" must be a record or a list of records\n", file,
                s->line);
        rc = 2;
      }
    } else {
      fprintf(stderr, "engine: %s:%lu: expected \"case\", \"in\", \"advance\" or \"out\"\n", file,
              s->line);
      rc = 2;
    }
  }
  pl_sim_stop(r.p);
  if (rc == 0) {
    /* the differences go after the verdict: collect them first */
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (mem == NULL) {
      rc = 2;
      goto done;
    }
    for (i = 0; i < r.n_outputs; i++)
      if (compared[i]) diffs += compare(mem, &r, i, want[i]);
    fclose(mem);
    if (diffs == 0) printf("ok %s\n", tc->name);
    else printf("FAIL %s (%s:%lu)\n%s", tc->name, file, tc->line, text ? text : "");
    free(text);
    rc = diffs ? 1 : 0;
  }
done:
  for (i = 0; want != NULL && i < r.n_outputs; i++) cJSON_Delete(want[i]);
  free(want);
  free(compared);
  pipeline_free(r.p);
  for (i = 0; i < r.n_outputs; i++)
    if (r.captures[i] != NULL) fclose(r.captures[i]);
  free(r.captures);
  for (i = 0; i < r.n_containers; i++) container_unref(r.containers[i]);
  config_free(&cfg);
  return rc;
}

int filtertest_main(int argc, char **argv, const char *lua_dir) {
  const char *pipeline;
  char *def = NULL;
  int passed = 0, failed = 0, bad = 0;

  if (argc < 2) {
    fprintf(stderr, "usage: engine test PIPELINE.lua [CASES.jsonl ...]\n");
    return 2;
  }
  pipeline = argv[1];
  if (argc == 2) { /* PIPELINE.test.jsonl */
    size_t n = strlen(pipeline);
    if (n > 4 && strcmp(pipeline + n - 4, ".lua") == 0) n -= 4;
    if ((def = malloc(n + 12)) == NULL) return 2;
    snprintf(def, n + 12, "%.*s.test.jsonl", (int)n, pipeline);
  }
  for (int a = argc == 2 ? 1 : 2; a < argc && !bad; a++) {
    const char *file = argc == 2 ? def : argv[a];
    tcase_t *cases;
    size_t n;
    if (read_cases(file, &cases, &n) < 0) {
      bad = 1;
      break;
    }
    for (size_t i = 0; i < n && !bad; i++) {
      int rc = run_case(pipeline, lua_dir, file, &cases[i]);
      if (rc == 0) passed++;
      else if (rc == 1) failed++;
      else bad = 1;
    }
    free_cases(cases, n);
  }
  free(def);
  if (bad) return 2;
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
