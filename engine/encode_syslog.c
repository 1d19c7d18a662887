/* encode_syslog.c - RFC 5424 syslog messages, framed for TCP by octet
 * counting (RFC 6587 3.4.1) or by a trailing LF (see encode.h).
 *
 *   <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG
 *
 * PRI = facility * 8 + severity (a facility outside 0..23 counts as 1,
 * user). TIMESTAMP is the record's time in UTC with microseconds, the most
 * RFC 5424 allows. HOSTNAME is the one given, APP-NAME the container name
 * (48 bytes at most), PROCID the container id's first 12 characters, MSGID
 * the stream; in these header fields every byte outside printable ASCII
 * (33..126) becomes '_', and an empty or missing one is "-". There is no
 * structured data. MSG is the line, bytes as they are except each LF, which
 * becomes the two characters "\n" so that no message spans lines. */
#include <stdio.h>
#include <string.h>

#include <lua.h>

#include "encode.h"
#include "encode_record.h"
#include "timestamp.h"

#define SYSLOG_HOSTNAME_MAX 255
#define SYSLOG_APP_NAME_MAX 48
#define SYSLOG_PROCID_LEN 12
#define SYSLOG_MSGID_MAX 32

/* Appends " " and s[0..len) cut to max bytes as a header field. Returns 0
 * or -1. */
static int add_field(strbuf_t *b, const char *s, size_t len, size_t max) {
  size_t i, start;

  if (s == NULL || len == 0) return encode_lit(b, " -");
  if (len > max) len = max;
  start = b->len;
  if (encode_lit(b, " ") < 0 || strbuf_add(b, s, len) < 0) return -1;
  for (i = start + 1; i < b->len; i++) {
    if ((unsigned char)b->data[i] < 33 || (unsigned char)b->data[i] > 126) b->data[i] = '_';
  }
  return 0;
}

/* Appends the line with every LF as "\n". Returns 0 or -1. */
static int add_msg(strbuf_t *b, const char *s, size_t len) {
  const char *nl;

  while (len > 0 && (nl = memchr(s, '\n', len)) != NULL) {
    if (strbuf_add(b, s, (size_t)(nl - s)) < 0 || encode_lit(b, "\\n") < 0) return -1;
    len -= (size_t)(nl - s) + 1;
    s = nl + 1;
  }
  return strbuf_add(b, s, len);
}

/* Appends the message of the record at rec (absolute). Returns 0 or -1. */
static int add_message(strbuf_t *b, lua_State *L, int rec, const char *hostname, int facility,
                       int64_t now) {
  char num[ENCODE_NUM_LEN], ts[TS_LEN + 1], head[48];
  encode_severity_t sev;
  const char *s;
  size_t len;
  int n, severity;

  encode_record_severity(L, rec, &sev);
  severity = sev.syslog;
  if (severity < 0) {
    s = encode_field_text(L, rec, "stream", num, &len);
    severity = s != NULL && len == 6 && memcmp(s, "stderr", 6) == 0 ? 3 : 6;
  }
  if (facility < 0 || facility > 23) facility = 1;
  ts_format(encode_record_time(L, rec, now), ts);
  /* "2006-01-02T15:04:05.123456" and "Z": microseconds at most */
  n = snprintf(head, sizeof head, "<%d>1 %.26sZ", facility * 8 + severity, ts);
  if (strbuf_add(b, head, (size_t)n) < 0) return -1;
  if (add_field(b, hostname, hostname ? strlen(hostname) : 0, SYSLOG_HOSTNAME_MAX) < 0) return -1;
  s = encode_field_text(L, rec, "name", num, &len);
  if (add_field(b, s, len, SYSLOG_APP_NAME_MAX) < 0) return -1;
  s = encode_field_text(L, rec, "container", num, &len);
  if (add_field(b, s, len, SYSLOG_PROCID_LEN) < 0) return -1;
  s = encode_field_text(L, rec, "stream", num, &len);
  if (add_field(b, s, len, SYSLOG_MSGID_MAX) < 0 || encode_lit(b, " - ") < 0) return -1;
  s = encode_field_text(L, rec, "line", num, &len);
  return s == NULL ? 0 : add_msg(b, s, len);
}

int encode_syslog_one(strbuf_t *b, lua_State *L, int idx, const char *hostname, int facility) {
  idx = encode_abs(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  if (!lua_checkstack(L, 4)) return -1;
  return add_message(b, L, idx, hostname, facility, ts_now());
}

int encode_syslog(strbuf_t *b, lua_State *L, int idx, const char *hostname, int facility,
                  int octet_counting) {
  strbuf_t msg = {0};
  int64_t now = ts_now();
  char count[32];
  size_t i, n;
  int rc = 0, c;

  idx = encode_abs(L, idx);
  if (!lua_checkstack(L, 8)) return -1;
  n = lua_objlen(L, idx);
  for (i = 1; i <= n && rc == 0; i++) {
    lua_rawgeti(L, idx, (int)i);
    if (lua_type(L, -1) == LUA_TTABLE) {
      msg.len = 0;
      rc = add_message(&msg, L, lua_gettop(L), hostname, facility, now);
      if (rc == 0 && octet_counting) {
        c = snprintf(count, sizeof count, "%zu ", msg.len);
        rc = strbuf_add(b, count, (size_t)c) < 0 || strbuf_add(b, msg.data, msg.len) < 0 ? -1 : 0;
      } else if (rc == 0) {
        rc = strbuf_add(b, msg.data, msg.len) < 0 || encode_lit(b, "\n") < 0 ? -1 : 0;
      }
    }
    lua_pop(L, 1);
  }
  strbuf_free(&msg);
  return rc;
}
