/* checkpoint.h - each container's cursor as far as the outputs
 * acknowledged it, saved in the state directory.
 *
 * A batch is acknowledged once the pipeline ran it through the filters and
 * every output took it (checkpoint_ack). The acknowledged cursor then holds
 * its lines' keys, so a resume after an engine restart starts a margin
 * before the newest acknowledged line and drops what was delivered: nothing
 * lost, and a line repeats only if it was sent but not yet acknowledged, or
 * acknowledged less than `checkpoint_interval` before the engine died.
 *
 * The file <state_dir>/cursors.json is written atomically (a temporary file,
 * renamed over the old one; with fsync, the file is fsync'ed before the
 * rename and the folder after it) every checkpoint_interval seconds when
 * something changed, by a libuv threadpool thread (the loop only copies the
 * cursors), and once more synchronously at stop. Each container keeps its
 * newest 16384 keys (older ones move its resume point, as in cursor.h). The
 * file never grows past 256 MiB: a save that would is refused with a
 * warning (the last file is kept) and tried again a minute later. A larger
 * file (from elsewhere) is still read, one container at a time. A file
 * that cannot be parsed is renamed to cursors.json.corrupt and the engine
 * starts empty, with a warning. Loop thread only, except where noted. */
#ifndef ENGINE_CHECKPOINT_H
#define ENGINE_CHECKPOINT_H

#include <stddef.h>
#include <uv.h>
#include "batch.h"
#include "cursor.h"

typedef struct checkpoint checkpoint_t;

/* Creates state_dir if needed and loads its cursors. interval: seconds
 * between saves. Containers are known by their key, "<daemon>/<id>"
 * (container.h); a container the file names by its id alone (a file of an
 * engine that followed one daemon) belongs to first_daemon. write_plain:
 * first_daemon's containers are written by their id alone (one daemon
 * followed: the file stays as such engines read and write it); else every
 * key is written whole.
 * Returns NULL with a message in err when the folder cannot be created or
 * written. do_fsync: fsync each save before it replaces the old file. */
checkpoint_t *checkpoint_open(uv_loop_t *loop, const char *state_dir, double interval, int do_fsync,
                              int64_t margin_ns, const char *first_daemon, int write_plain,
                              char *err, size_t errlen);

/* A new cursor for a reader of the container of key id, restored from the saved one, or
 * NULL when none is saved (or out of memory). The caller owns it. */
cursor_t *checkpoint_resume(checkpoint_t *cp, const char *id);

/* Records a processed batch: every line in it is acknowledged. */
void checkpoint_ack(checkpoint_t *cp, const batch_t *b);

/* Forgets a removed container. */
void checkpoint_forget(checkpoint_t *cp, const char *id);

/* A complete list of one daemon's containers (running or not): their keys
 * ids[0..n) (sorted here, in place; the strings stay the caller's), each
 * starting with prefix ("<daemon>/"). A saved cursor of that daemon
 * whose container is missing from every such list for at least grace
 * seconds (and acknowledged nothing meanwhile) is forgotten, at the list
 * that finds it so: the removal of a container goes unnoticed when the
 * engine was down or skipped its event. */
void checkpoint_reconcile(checkpoint_t *cp, const char *prefix, const char **ids, size_t n,
                          double grace);

/* Containers with a saved cursor. */
size_t checkpoint_count(const checkpoint_t *cp);

/* Seconds since the saved file last held every acknowledged cursor: since
 * the last successful save, or since a periodic check found nothing new to
 * save (at open, what was loaded counts as saved). Loop thread. */
double checkpoint_age(const checkpoint_t *cp);

/* Stops the periodic saves; closed(ud) runs once the timer is closed and no
 * save is in flight. Idempotent. */
void checkpoint_close(checkpoint_t *cp, void (*closed)(void *ud), void *ud);

/* Writes the file now, blocking: for the end of a run, after the loop has
 * stopped. Returns 0, or -1 with a message in err. */
int checkpoint_save_now(checkpoint_t *cp, char *err, size_t errlen);

/* For tests and fuzzing: cursors parsed from the file's text, without a
 * folder or a timer (free with checkpoint_free), or NULL when the text is
 * malformed or memory runs out; and the text of cursors (malloc'ed, or NULL
 * when out of memory). */
checkpoint_t *checkpoint_parse(const char *text, size_t len, int64_t margin_ns);
char *checkpoint_text(const checkpoint_t *cp, size_t *len);
/* The same as checkpoint_parse, by the reader of files over the size
 * limit (one container at a time; whatever the text's size). */
checkpoint_t *checkpoint_parse_large(const char *text, size_t len, int64_t margin_ns);

/* Frees everything (after checkpoint_close completed, or when the loop
 * never ran). NULL is ignored. */
void checkpoint_free(checkpoint_t *cp);

#endif
