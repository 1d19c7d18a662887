/* check.h - invariants the engine relies on, checked where a broken one
 * would otherwise show up later and elsewhere (a reader freed while its
 * handles are open, a handle counted closed twice, an id added twice).
 *
 * ENGINE_CHECK(cond) aborts with the condition, file and line when cond is
 * false, in the builds made with ENGINE_CHECKS (the ASan and TSan builds:
 * `make asan`, `make tsan`, which the specs run); elsewhere it is nothing,
 * and cond is not evaluated. */
#ifndef ENGINE_CHECK_H
#define ENGINE_CHECK_H

#ifdef ENGINE_CHECKS
void engine_check_failed(const char *what, const char *file, int line);
#define ENGINE_CHECK(cond) ((cond) ? (void)0 : engine_check_failed(#cond, __FILE__, __LINE__))
#else
#define ENGINE_CHECK(cond) ((void)0)
#endif

#endif
