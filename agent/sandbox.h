/*
 * The sandbox of a running daemon, entered once start-up is over (config
 * read, backends created, threads started, the mount or first directory
 * generation in place, every capability dropped):
 *
 *   - Landlock (kernel >= 5.13, ABI found at run time): file access limited
 *     to what the config names (the directory of each file a backend reads,
 *     the audit file's directory, the directory output, the config's
 *     directory, read-only system files: CA certificates, resolver files,
 *     shared libraries), /dev/fuse and /proc/self. A no-op with one info
 *     line where the kernel has none.
 *   - seccomp (libseccomp): a syscall allowlist for the mode (FUSE or
 *     directory; network syscalls only when a backend or listener talks to
 *     the network), on every thread (TSYNC). Any other syscall kills the
 *     process: a SIGSYS handler first writes one line naming the syscall.
 *
 * Each has its switch: "hardening": {"seccomp": false, "landlock": false}.
 */
#ifndef SECRETFS_SANDBOX_H
#define SECRETFS_SANDBOX_H

#include "secretfs/config.h"
#include "secretfs/diag.h"

/*
 * Enters the sandbox for cfg (see above). Returns 0, or SFS_EIO when a
 * filter that the kernel supports could not be loaded (logged): the caller
 * stops then, rather than run unconfined.
 */
int sandbox_enter(const struct config *cfg);

/*
 * Landlock confines the thread that enters it and the threads it starts
 * afterwards: each thread started before sandbox_enter (the scheduler and
 * its workers, the listeners', the audit writer, the AWS API's refresher)
 * calls this at each step, before it touches a file; the first call after
 * sandbox_enter confines the thread, the others return at once. A no-op
 * without Landlock.
 */
void sandbox_thread_enter(void);

/*
 * A reload's check of cfg against the sandbox entered at start (which
 * cannot widen): each file a backend names (relative names are config_dir's)
 * must be readable under the Landlock rules, and the syscall filter must
 * allow the network when a backend needs it. Each problem is added to d
 * naming its key path. Nothing when the sandbox is off.
 */
void sandbox_check_config(const struct config *cfg, const char *config_dir,
                          struct diag *d);

/*
 * Test builds (SECRETFS_TEST_HOOKS): the action $SECRETFS_TEST_HOOK names,
 * taken at start (sandbox_take_test_hook, which unsets it) and run inside
 * the sandbox (sandbox_run_test_hook): "syscall" makes a syscall outside the
 * allowlist (mount), "open:PATH" opens PATH read-only and logs the outcome
 * (never the content), "leak" drops a 4242-byte allocation (for the
 * sanitizer build's leak check at exit). No-ops in other builds.
 */
void sandbox_take_test_hook(void);
void sandbox_run_test_hook(void);

#endif
