/* timestamp.c - RFC3339Nano parsing and formatting in integer nanoseconds.
 *
 * Calendar arithmetic is done on the proleptic Gregorian calendar with whole
 * days counted from 1970-01-01; no libc time conversion and no floating
 * point is involved, so every nanosecond survives a round trip. */
#include "timestamp.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#define NS_PER_SEC INT64_C(1000000000)
#define SECS_PER_DAY INT64_C(86400)
/* days_from_civil's count for 1970-01-01, subtracted to get Unix days. */
#define DAYS_0000_TO_1970 INT64_C(719468)

static int is_leap(int64_t y) { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }

static int days_in_month(int64_t y, int m) {
  static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Days from 1970-01-01 to y-m-d; y >= 1, m 1..12, d 1..31.
 * The year is counted from March so that the leap day comes last: days
 * before a March-based month are then (153 * month + 2) / 5, with month 0
 * for March. */
static int64_t days_from_civil(int64_t y, int m, int d) {
  int64_t yy = y - (m <= 2);
  int64_t mp = (m + 9) % 12;
  int64_t doy = (153 * mp + 2) / 5 + d - 1;
  int64_t days = yy * 365 + yy / 4 - yy / 100 + yy / 400 + doy;
  return days - DAYS_0000_TO_1970;
}

/* The calendar date of a day number (the inverse of days_from_civil). The
 * first guess of the year is within one of the answer and is corrected by
 * comparing with the first day of the guessed years. */
static void civil_from_days(int64_t days, int64_t *y, int *m, int *d) {
  int64_t year = 1970 + days * 400 / 146097;
  while (days_from_civil(year, 1, 1) > days) year--;
  while (days_from_civil(year + 1, 1, 1) <= days) year++;
  int64_t doy = days - days_from_civil(year, 1, 1);
  int month = 1;
  while (doy >= days_in_month(year, month)) {
    doy -= days_in_month(year, month);
    month++;
  }
  *y = year;
  *m = month;
  *d = (int)doy + 1;
}

/* Reads exactly n decimal digits; returns -1 on anything else. */
static int64_t digits(const char *s, size_t n) {
  int64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

/* Nanoseconds of secs + frac/1e9, or -1 (with *ns untouched) when the sum
 * does not fit in int64. frac is 0..999999999. */
static int to_ns(int64_t secs, int64_t frac, int64_t *ns) {
  int64_t v;
  if (secs < 0 && frac > 0) { /* keep the product in range near INT64_MIN */
    secs += 1;
    frac -= NS_PER_SEC;
  }
  if (__builtin_mul_overflow(secs, NS_PER_SEC, &v) || __builtin_add_overflow(v, frac, &v))
    return -1;
  *ns = v;
  return 0;
}

int ts_parse(const char *s, size_t len, int64_t *ns, size_t *used) {
  /* "YYYY-MM-DDTHH:MM:SS" is 19 bytes, then at least 'Z'. */
  if (len < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
    return -1;
  int64_t y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
  int64_t h = digits(s + 11, 2), mi = digits(s + 14, 2), sec = digits(s + 17, 2);
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, (int)mo) || h < 0 || h > 23 ||
      mi < 0 || mi > 59 || sec < 0 || sec > 59)
    return -1;

  size_t i = 19;
  int64_t frac = 0;
  if (s[i] == '.') {
    size_t n = 0;
    i++;
    while (i + n < len && n <= 9 && s[i + n] >= '0' && s[i + n] <= '9') n++;
    if (n == 0 || n > 9) return -1;
    frac = digits(s + i, n);
    for (size_t k = n; k < 9; k++) frac *= 10;
    i += n;
  }

  int64_t offset = 0;
  if (i < len && s[i] == 'Z') {
    i++;
  } else if (i + 6 <= len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
    int64_t oh = digits(s + i + 1, 2), om = digits(s + i + 4, 2);
    if (oh < 0 || oh > 23 || om < 0 || om > 59) return -1;
    offset = (oh * 60 + om) * 60 * (s[i] == '-' ? -1 : 1);
    i += 6;
  } else {
    return -1;
  }

  int64_t secs =
      days_from_civil(y, (int)mo, (int)d) * SECS_PER_DAY + h * 3600 + mi * 60 + sec - offset;
  if (to_ns(secs, frac, ns) < 0) return -1;
  *used = i;
  return 0;
}

/* Writes v as exactly n decimal digits (v >= 0). */
static void put_digits(char *out, int64_t v, int n) {
  for (int i = n - 1; i >= 0; i--) {
    out[i] = (char)('0' + v % 10);
    v /= 10;
  }
}

void ts_format(int64_t ns, char out[TS_LEN + 1]) {
  int64_t secs = ns / NS_PER_SEC, frac = ns % NS_PER_SEC;
  if (frac < 0) { /* floor division */
    frac += NS_PER_SEC;
    secs -= 1;
  }
  int64_t days = secs / SECS_PER_DAY, sod = secs % SECS_PER_DAY;
  if (sod < 0) {
    sod += SECS_PER_DAY;
    days -= 1;
  }
  int64_t y;
  int m, d;
  civil_from_days(days, &y, &m, &d);

  put_digits(out, y, 4);
  out[4] = '-';
  put_digits(out + 5, m, 2);
  out[7] = '-';
  put_digits(out + 8, d, 2);
  out[10] = 'T';
  put_digits(out + 11, sod / 3600, 2);
  out[13] = ':';
  put_digits(out + 14, sod / 60 % 60, 2);
  out[16] = ':';
  put_digits(out + 17, sod % 60, 2);
  out[19] = '.';
  put_digits(out + 20, frac, 9);
  out[29] = 'Z';
  out[TS_LEN] = '\0';
}

void ts_format_since(int64_t ns, char out[32]) {
  if (ns < 0) ns = 0;
  snprintf(out, 32, "%" PRId64 ".%09" PRId64, ns / NS_PER_SEC, ns % NS_PER_SEC);
}

int64_t ts_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (int64_t)t.tv_sec * NS_PER_SEC + t.tv_nsec;
}
