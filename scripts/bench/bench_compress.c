/* bench_compress.c - what the http outputs' compression costs: each file
 * named on the command line is one request body as the engine writes it
 * (uncompressed); every body is compressed the way output_http.c does it
 * (gzip: zlib's default level, a gzip stream; zstd: level 3, one frame),
 * and the program prints, per method, the input MiB compressed per CPU
 * second (the best of five rounds over every body) and the ratio (input
 * bytes over output bytes). Built and run by scripts/bench-compress.sh.
 *
 *   build/bench_compress BODY...                    */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#include <zstd.h>

typedef struct {
  char *data;
  size_t len;
} body_t;

static double cpu_now(void)
{
  struct timespec t;

  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Compresses in into out (capacity cap) as a gzip stream; returns the
 * compressed size, or 0 on failure. */
static size_t gzip_one(const body_t *in, unsigned char *out, size_t cap)
{
  z_stream z;
  size_t n;

  memset(&z, 0, sizeof z);
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return 0;
  z.next_in = (Bytef *)in->data;
  z.avail_in = (uInt)in->len;
  z.next_out = out;
  z.avail_out = (uInt)cap;
  n = deflate(&z, Z_FINISH) == Z_STREAM_END ? cap - z.avail_out : 0;
  deflateEnd(&z);
  return n;
}

static size_t zstd_one(const body_t *in, unsigned char *out, size_t cap)
{
  size_t n = ZSTD_compress(out, cap, in->data, in->len, 3);

  return ZSTD_isError(n) ? 0 : n;
}

static int read_file(const char *path, body_t *b)
{
  FILE *f = fopen(path, "rb");
  long size;

  if (!f)
    return -1;
  if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
      !(b->data = malloc((size_t)size + 1)) || fread(b->data, 1, (size_t)size, f) != (size_t)size) {
    fclose(f);
    return -1;
  }
  b->len = (size_t)size;
  fclose(f);
  return 0;
}

int main(int argc, char **argv)
{
  static const struct {
    const char *name;
    size_t (*fn)(const body_t *, unsigned char *, size_t);
  } methods[] = {{"gzip (zlib level 6)", gzip_one}, {"zstd (level 3)", zstd_one}};
  int n = argc - 1;
  body_t *bodies = calloc(n > 0 ? (size_t)n : 1, sizeof *bodies);
  size_t total = 0, biggest = 0;

  if (n < 1 || !bodies) {
    fprintf(stderr, "usage: bench_compress BODY...\n");
    return 2;
  }
  for (int i = 0; i < n; i++) {
    if (read_file(argv[i + 1], &bodies[i]) != 0) {
      fprintf(stderr, "bench_compress: cannot read %s\n", argv[i + 1]);
      return 1;
    }
    total += bodies[i].len;
    if (bodies[i].len > biggest)
      biggest = bodies[i].len;
  }
  size_t cap = ZSTD_compressBound(biggest) + compressBound((uLong)biggest) + 1024;
  unsigned char *out = malloc(cap);
  if (!out)
    return 1;
  printf("%d bodies, %.2f MiB, %.0f bytes each on average\n\n", n, total / 1048576.0,
         (double)total / n);
  printf("| method | MiB/s (input, one core) | CPU ms per MiB | ratio |\n|---|---|---|---|\n");
  for (size_t m = 0; m < sizeof methods / sizeof *methods; m++) {
    double best = 0;
    size_t packed = 0;
    for (int round = 0; round < 5; round++) {
      double t0 = cpu_now();
      packed = 0;
      for (int i = 0; i < n; i++) {
        size_t k = methods[m].fn(&bodies[i], out, cap);
        if (k == 0) {
          fprintf(stderr, "bench_compress: %s failed on %s\n", methods[m].name, argv[i + 1]);
          return 1;
        }
        packed += k;
      }
      double t = cpu_now() - t0;
      if (round == 0 || t < best)
        best = t;
    }
    double mib = total / 1048576.0;
    printf("| %s | %.1f | %.2f | %.2f |\n", methods[m].name, mib / best, best * 1000 / mib,
           (double)total / (double)packed);
  }
  for (int i = 0; i < n; i++)
    free(bodies[i].data);
  free(bodies);
  free(out);
  return 0;
}
