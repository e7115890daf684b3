/*
 * Preparing a mount point: create it if missing, detect a live secretfs
 * already mounted there (refuse), and detach a stale FUSE mount left by a
 * dead instance (readers would get ENOTCONN forever otherwise). Also the
 * mount table look-up of the readiness probe, and directory creation for
 * the directory output.
 */
#ifndef SECRETFS_MOUNTPOINT_H
#define SECRETFS_MOUNTPOINT_H

/* Returns 0 when path is ready to be mounted on, or SFS_EIO (logged). */
int mountpoint_prepare(const char *path);

/* True for "/dev/fd/N": a descriptor mounted by a privileged helper. */
int mountpoint_is_fd(const char *path);

/* True when a secretfs FUSE filesystem (fuse.secretfs) is mounted at path,
 * per /proc/self/mountinfo; path's last component is not touched. */
int mountpoint_is_secretfs(const char *path);

/* Like mountpoint_is_secretfs, but also true where that cannot be told
 * (no /proc mounted): for the unmount at exit, which must not be skipped. */
int mountpoint_maybe_secretfs(const char *path);

/* Detaches the mount at path lazily: umount2(MNT_DETACH), else
 * fusermount3 -u -z. Returns 0 or -1. */
int mountpoint_detach(const char *path);

/* Creates the directory path (and missing parents) unless it exists; a
 * symbolic link or other non-directory is refused. Returns 0 or SFS_EIO
 * (logged). */
int mountpoint_make_dir(const char *path);

#endif
