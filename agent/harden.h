/*
 * Process hardening: no core dumps and not ptrace-able from the start;
 * after the mount is in place, no new privileges and (as root) only the
 * capabilities a running instance still uses.
 */
#ifndef SECRETFS_HARDEN_H
#define SECRETFS_HARDEN_H

#include <stdbool.h>

/* Core dumps off, PR_SET_DUMPABLE 0. Call first. */
void harden_process(void);

/*
 * Call once the mount (or the first directory generation) is in place.
 * As root: drops every capability from the bounding, permitted and
 * effective sets but CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH (secret files
 * of other users), CAP_KILL (on_change signals), CAP_CHOWN and CAP_FOWNER
 * (directory output) and, for FUSE, CAP_SYS_ADMIN (unmounting at exit).
 * Sets PR_SET_NO_NEW_PRIVS, except for FUSE as non-root, where unmounting
 * needs the setuid fusermount3. Failures are logged, not fatal.
 */
void harden_after_mount(bool fuse);

#endif
