/* docker.h - the part of the Docker Engine API the engine uses, on http.h.
 *
 * Only GET requests: the engine never changes anything in the daemon, so
 * read access to the socket is all it needs. The API version is negotiated
 * from /_ping (docker_negotiate) and never hard-coded; until then requests
 * carry no version prefix (the daemon's own maximum).
 *
 * Requests return the http_req_t to cancel with http_cancel, or NULL when
 * out of memory (no callback runs). Buffered answers are parsed with
 * docker_json. Loop thread only. */
#ifndef ENGINE_DOCKER_H
#define ENGINE_DOCKER_H

#include <stdint.h>
#include "http.h"

typedef struct docker docker_t;

/* Size limits for buffered answers. */
#define DOCKER_LIST_MAX (64u * 1024 * 1024)
#define DOCKER_INSPECT_MAX (4u * 1024 * 1024)

/* host: a DOCKER_HOST value, or NULL for $DOCKER_HOST, else the first
 * socket that exists of unix:///var/run/docker.sock,
 * unix:///run/podman/podman.sock (rootful Podman) and
 * unix://$XDG_RUNTIME_DIR/podman/podman.sock (rootless Podman), else
 * unix:///var/run/docker.sock. A tcp:// or https:// host is reached over
 * TLS with tls's files (NULL members: none given), else, when
 * $DOCKER_TLS_VERIFY is set, with ca.pem, cert.pem and key.pem of
 * $DOCKER_CERT_PATH (default ~/.docker), like the docker CLI; an https://
 * host without either verifies with the system's CAs. Returns NULL with a
 * message in err (also when a certificate file cannot be read). */
typedef struct docker_tls {
  const char *ca, *cert, *key;
} docker_tls_t;

docker_t *docker_new(uv_loop_t *loop, const char *host, const docker_tls_t *tls, char *err,
                     size_t errlen);

/* The host in use, for messages. */
const char *docker_host(const docker_t *d);

/* Follow streams (docker_logs with follow) of a slow container are read at
 * most every ms milliseconds: after a read of under 4 KiB the socket rests
 * that long, so a container writing a line now and then is read several
 * lines at a time (fewer wake-ups and system calls) at the cost of up to ms
 * of delay. A busy stream (4 KiB or more per ms, judged once per ms) is
 * read as fast as it comes: the daemon writes each line on its own, so its
 * reads are small too. 0: no delay. */
void docker_set_read_delay(docker_t *d, unsigned ms);

/* At most n connections to the daemon at once (0: no limit); further
 * requests wait for a free one (http_set_max_connections). */
void docker_set_max_connections(docker_t *d, long n);

/* Reads of the daemon's answers that brought data (metrics). */
uint64_t docker_reads(const docker_t *d);

/* Times a slow follow stream rested for docker.read_delay (metrics). */
uint64_t docker_rests(const docker_t *d);

/* GET /_ping. Pass its result to docker_negotiate. */
http_req_t *docker_ping(docker_t *d, const http_handler_t *cb, void *ud);

/* Takes the version from a /_ping answer. Returns 0, or -1 with a message
 * when the daemon did not answer like a Docker daemon or its API is older
 * than the engine supports (1.24). */
int docker_negotiate(docker_t *d, const http_result_t *r, char *err, size_t errlen);

/* The negotiated version ("1.41"), or "" before negotiation. */
const char *docker_api_version(const docker_t *d);

/* GET /containers/json: the running containers, or every one with all. */
http_req_t *docker_list(docker_t *d, int all, const http_handler_t *cb, void *ud);

/* GET /containers/{id}/json. */
http_req_t *docker_inspect(docker_t *d, const char *id, const http_handler_t *cb, void *ud);

/* GET /containers/{id}/logs with stdout, stderr and timestamps; since_ns <0:
 * the whole retained history; until_ns <= 0: no end. A streaming request.
 * on_sent(ud), when not NULL: the request was written (http_opts_t). */
http_req_t *docker_logs(docker_t *d, const char *id, int64_t since_ns, int64_t until_ns, int follow,
                        const http_handler_t *cb, void (*on_sent)(void *ud), void *ud);

/* GET /containers/{id}/logs with stdout, stderr, timestamps and tail=n: the
 * container's last n log entries, buffered (at most DOCKER_TAIL_MAX bytes). */
#define DOCKER_TAIL_MAX (1024u * 1024)
http_req_t *docker_logs_tail(docker_t *d, const char *id, unsigned n, const http_handler_t *cb,
                             void *ud);

/* POST /containers/{id}/attach?stream=1&stdout=1&stderr=1: the container's
 * output as it writes it, without timestamps (decode.h, decoder_untimed),
 * until its output ends (it exited). Made before the container starts, it
 * gets every byte. A streaming request; the only request that is no GET.
 * The daemon holds the container's writes until the stream is read, so an
 * attach stream is read at once (never paused). */
http_req_t *docker_attach(docker_t *d, const char *id, const http_handler_t *cb, void *ud);

/* GET /events for container events from since_ns. A streaming request of
 * newline-separated JSON objects. */
http_req_t *docker_events(docker_t *d, int64_t since_ns, const http_handler_t *cb, void *ud);

/* Parses a buffered answer. Returns the document (free with cJSON_Delete,
 * passed as void* to keep cJSON out of this header), or NULL with a message
 * in err: the transport error, the daemon's {"message"} for a non-2xx
 * status, or a parse error. */
void *docker_json(const http_result_t *r, char *err, size_t errlen);

/* Writes a one-line description of a failed answer: the transport error,
 * or "HTTP <status>: <daemon's message>". */
void docker_describe_error(const http_result_t *r, char *out, size_t n);

/* Closes the client (cancelling every request). closed(ud) runs once the
 * handles are closed; d is freed by then. */
void docker_close(docker_t *d, void (*closed)(void *ud), void *ud);

#endif
