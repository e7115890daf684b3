/*
 * Preparing a mount point: create it if missing, detect a live secretfs
 * already mounted there (refuse), and detach a stale FUSE mount left by a
 * dead instance (readers would get ENOTCONN forever otherwise).
 */
#ifndef SECRETFS_MOUNTPOINT_H
#define SECRETFS_MOUNTPOINT_H

/* Returns 0 when path is ready to be mounted on, or SFS_EIO (logged). */
int mountpoint_prepare(const char *path);

/* True for "/dev/fd/N": a descriptor mounted by a privileged helper. */
int mountpoint_is_fd(const char *path);

#endif
