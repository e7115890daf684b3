/*
 * Process hardening: no core dumps and not ptrace-able from the start;
 * after the mount is in place, no new privileges and no capability.
 */
#ifndef SECRETFS_HARDEN_H
#define SECRETFS_HARDEN_H

#include <stdbool.h>

/* Core dumps off, PR_SET_DUMPABLE 0. Call first. */
void harden_process(void);

/*
 * Call once the mount (or the first directory generation) is in place.
 * Drops every capability from the bounding, permitted and effective sets
 * (as root; what needs one is the monitor's, monitor.h) and sets
 * PR_SET_NO_NEW_PRIVS. Failures are logged, not fatal.
 */
void harden_after_mount(void);

/*
 * The monitor's (monitor.h) drop, at its start: as root it keeps only
 * CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH (pid files and commands of other
 * users), CAP_KILL (on_change signals), CAP_CHOWN and CAP_FOWNER
 * (directory output) and, for FUSE, CAP_SYS_ADMIN (the unmount). Sets
 * PR_SET_NO_NEW_PRIVS, except for FUSE as non-root, where unmounting runs
 * the setuid fusermount3.
 */
void harden_monitor(bool fuse);

#endif
