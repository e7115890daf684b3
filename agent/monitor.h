/*
 * The privileged monitor: a small process forked at start-up, before any
 * backend exists (so it never holds a secret), that keeps the few
 * operations the daemon may no longer do itself once it has dropped every
 * capability and entered its syscall and file sandbox (harden.h) -- the
 * way OpenSSH's privsep monitor keeps the privileged ones apart:
 *
 *   - FUSE: unmounts (umount2 MNT_DETACH, or fusermount3 -u -z) when asked
 *     at exit, and by itself when the daemon is gone (end of file on the
 *     socket: a SIGKILL of the daemon leaves no mount that hangs readers);
 *   - on_change: reads pid files and sends the signal, starts commands
 *     (outside the daemon's sandbox), reaps and, past their time, kills
 *     them; only the actions the config named at start;
 *   - directory output: gives a file or directory below the target its
 *     owner (and mode), as CAP_CHOWN and CAP_FOWNER allow.
 *
 * The monitor keeps only the capabilities these need (CAP_SYS_ADMIN for
 * FUSE, CAP_KILL, CAP_CHOWN, CAP_FOWNER, CAP_DAC_OVERRIDE and
 * CAP_DAC_READ_SEARCH), closes every other descriptor, wipes its copy of
 * the environment and ignores the stop signals: it ends when the daemon
 * does. Requests and replies go over a SOCK_SEQPACKET socket pair, one at a
 * time (a mutex), from any thread of the daemon.
 */
#ifndef SECRETFS_MONITOR_H
#define SECRETFS_MONITOR_H

#include <stdbool.h>
#include <sys/types.h>

#include "secretfs/config.h"
#include "secretfs/fs.h"

struct monitor;

/*
 * Forks the monitor for cfg (borrowed; the monitor keeps its own copy of
 * the process, so the on_change actions it accepts are cfg's). Call before
 * any backend, store or thread exists. Returns 0 or SFS_EIO (logged).
 */
int monitor_start(const struct config *cfg, struct monitor **out);

/* Tells the monitor the FUSE mount at the config's path is in place: from
 * now on it unmounts it when the daemon ends. Returns 0 or SFS_EIO. */
int monitor_mounted(struct monitor *m);

/* Unmounts the FUSE mount now (lazily) and waits for it. Returns 0 or
 * SFS_EIO. */
int monitor_detach(struct monitor *m);

/* Reads a pid from pid_file and sends it sig, for an on_change action of
 * the config. Returns 0 (*pid set), or a negative errno: -EPERM (no such
 * action in the config), -EINVAL (no pid in the file), what kill says. */
int monitor_signal(struct monitor *m, const char *pid_file, int sig, pid_t *pid);

/* Starts the on_change command argv (one of the config's) with files as
 * SECRETFS_FILES (and SECRETFS_FILES_INCOMPLETE=1 when incomplete: a name
 * did not fit). Returns 0 (*pid set) or a negative errno. */
int monitor_spawn(struct monitor *m, char *const *argv, const char *files,
                  bool incomplete, pid_t *pid);

/* Whether the command pid (from monitor_spawn) ended: 0 still running, 1
 * ended (*status as waitpid gives it), or a negative errno. */
int monitor_reap(struct monitor *m, pid_t pid, int *status);

/* Sends SIGKILL to the command pid (from monitor_spawn). 0 or -errno. */
int monitor_kill(struct monitor *m, pid_t pid);

/* Gives the file or directory open as fd (O_PATH will do), which must be
 * below the directory output's path, to uid:gid and, unless mode is
 * (mode_t)-1, that mode. Returns 0 or -1 with errno set. */
int monitor_own(struct monitor *m, int fd, uid_t uid, gid_t gid, mode_t mode);

/* The fs output's privileged operations (fs.h) done by m: unmount and own. */
struct fs_privops monitor_privops(struct monitor *m);

/* Closes the socket (the monitor unmounts what is still mounted and
 * exits) and waits for it. NULL-safe. */
void monitor_free(struct monitor *m);

#endif
