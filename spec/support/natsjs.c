/* natsjs - a small JetStream client for the specs (libnats, blocking).
 *
 *   natsjs URL add STREAM SUBJECT [MAX_MSGS [REPLICAS [MAX_MSG_SIZE]]]
 *       creates a file stream taking SUBJECT (a 2-minute duplicate window);
 *       with MAX_MSGS > 0 it holds at most that many, refusing new ones
 *       (discard=new); with MAX_MSG_SIZE > 0 it refuses larger messages
 *   natsjs URL source STREAM FROM API_PREFIX
 *       creates a file stream sourcing stream FROM of another JetStream
 *       domain, reached through API_PREFIX (e.g. $JS.edge.API)
 *   natsjs URL dump STREAM
 *       prints every message of STREAM as "SEQ\tSUBJECT\tNATS-MSG-ID\tDATA"
 *   natsjs URL count STREAM
 *       prints the stream's message count
 * Exits 1 with a message on stderr when something fails. */
#ifndef ENGINE_NO_NATS
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

static int fail(const char *what, natsStatus s, jsErrCode jerr)
{
  fprintf(stderr, "natsjs: %s: %s (%d) %s\n", what, natsStatus_GetText(s), (int)jerr,
          nats_GetLastError(NULL));
  return 1;
}

int main(int argc, char **argv)
{
  if (argc < 4) {
    fprintf(stderr, "usage: natsjs URL add STREAM SUBJECT [MAX_MSGS [REPLICAS]] | source STREAM FROM "
                    "API_PREFIX | dump STREAM | count STREAM\n");
    return 2;
  }
  natsConnection *nc = NULL;
  jsCtx *js = NULL;
  jsErrCode jerr = 0;
  natsStatus s = natsConnection_ConnectTo(&nc, argv[1]);
  if (s != NATS_OK)
    return fail("connect", s, 0);
  s = natsConnection_JetStream(&js, nc, NULL);
  if (s != NATS_OK)
    return fail("jetstream", s, 0);
  int rc = 0;
  if (strcmp(argv[2], "add") == 0 && argc >= 5) {
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[1] = {argv[4]};
    cfg.Name = argv[3];
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Duplicates = (int64_t)120 * 1000000000;
    if (argc >= 6 && atol(argv[5]) > 0) {
      cfg.MaxMsgs = atol(argv[5]);
      cfg.Discard = js_DiscardNew;
    }
    if (argc >= 7)
      cfg.Replicas = atol(argv[6]);
    if (argc >= 8)
      cfg.MaxMsgSize = (int32_t)atol(argv[7]);
    jsStreamInfo *si = NULL;
    s = js_AddStream(&si, js, &cfg, NULL, &jerr);
    if (s != NATS_OK)
      rc = fail("add stream", s, jerr);
    jsStreamInfo_Destroy(si);
  } else if (strcmp(argv[2], "source") == 0 && argc >= 6) {
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    jsExternalStream ext = {.APIPrefix = argv[5], .DeliverPrefix = ""};
    jsStreamSource src = {.Name = argv[4], .External = &ext};
    jsStreamSource *sources[1] = {&src};
    cfg.Name = argv[3];
    cfg.Storage = js_FileStorage;
    cfg.Sources = sources;
    cfg.SourcesLen = 1;
    jsStreamInfo *si = NULL;
    s = js_AddStream(&si, js, &cfg, NULL, &jerr);
    if (s != NATS_OK)
      rc = fail("add stream", s, jerr);
    jsStreamInfo_Destroy(si);
  } else if (strcmp(argv[2], "dump") == 0 || strcmp(argv[2], "count") == 0) {
    jsStreamInfo *si = NULL;
    s = js_GetStreamInfo(&si, js, argv[3], NULL, &jerr);
    if (s != NATS_OK)
      return fail("stream info", s, jerr);
    if (strcmp(argv[2], "count") == 0) {
      printf("%" PRIu64 "\n", si->State.Msgs);
    } else {
      for (uint64_t seq = si->State.FirstSeq; seq && seq <= si->State.LastSeq; seq++) {
        natsMsg *m = NULL;
        s = js_GetMsg(&m, js, argv[3], seq, NULL, &jerr);
        if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
          continue;
        if (s != NATS_OK) {
          rc = fail("get message", s, jerr);
          break;
        }
        const char *id = NULL;
        if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) != NATS_OK)
          id = "";
        printf("%" PRIu64 "\t%s\t%s\t%.*s\n", seq, natsMsg_GetSubject(m), id,
               natsMsg_GetDataLength(m), natsMsg_GetData(m));
        natsMsg_Destroy(m);
      }
    }
    jsStreamInfo_Destroy(si);
  } else {
    fprintf(stderr, "natsjs: unknown command %s\n", argv[2]);
    rc = 2;
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  nats_Close();
  return rc;
}
#else
#include <stdio.h>
int main(void)
{
  fprintf(stderr, "natsjs: built without libnats\n");
  return 2;
}
#endif
