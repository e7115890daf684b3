/*
 * Mount point preparation (see mountpoint.h). A stale FUSE mount answers
 * every stat with ENOTCONN; it is detached with umount2(MNT_DETACH) when we
 * may, else through fusermount3 -u -z (the setuid helper libfuse uses).
 */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mountpoint.h"
#include "secretfs/error.h"
#include "secretfs/log.h"

extern char **environ;

int mountpoint_is_fd(const char *path)
{
	const char *p = path + strlen("/dev/fd/");

	if (strncmp(path, "/dev/fd/", strlen("/dev/fd/")) != 0 || !*p)
		return 0;
	for (; *p; p++)
		if (*p < '0' || *p > '9')
			return 0;
	return 1;
}

static int mkdir_p(const char *path)
{
	char buf[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof buf)
		return -1;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, 0755) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

static int run_fusermount_detach(const char *path)
{
	char *argv[] = {"fusermount3", "-u", "-z", "--", (char *)path, NULL};
	char *envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin", NULL};
	int status;
	pid_t pid;

	if (posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, envp) != 0)
		return -1;
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Resolves path without touching the last component (which may be a dead
 * mount): realpath of the parent plus the base name. */
static int resolve_parent(const char *path, char *out, size_t len)
{
	char tmp[4096], parent[4096];
	const char *base;
	char *slash;

	if (strlen(path) >= sizeof tmp)
		return -1;
	memcpy(tmp, path, strlen(path) + 1);
	while (strlen(tmp) > 1 && tmp[strlen(tmp) - 1] == '/')
		tmp[strlen(tmp) - 1] = '\0';
	slash = strrchr(tmp, '/');
	if (!slash) {
		base = tmp;
		if (!realpath(".", parent))
			return -1;
	} else {
		base = slash + 1;
		*slash = '\0';
		if (!realpath(slash == tmp ? "/" : tmp, parent))
			return -1;
	}
	if (snprintf(out, len, "%s/%s", strcmp(parent, "/") == 0 ? "" : parent, base) >=
	    (int)len)
		return -1;
	return 0;
}

/* Whether a filesystem whose type is fstype (or starts with it, when
 * prefix) is mounted at path, per mountinfo: 1 or 0, -1 without it. */
static int mounted_at(const char *path, const char *want, int prefix)
{
	char line[8192], real[4096];
	FILE *f;
	int found = 0;

	if (resolve_parent(path, real, sizeof real) < 0)
		return 0;
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -1; /* no /proc (a chroot without it): cannot tell */
	while (fgets(line, sizeof line, f)) {
		char mnt[4096], fstype[256];
		char *sep = strstr(line, " - ");
		/* Fields: id parent major:minor root mountpoint ... - fstype */
		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
		    sscanf(sep + 3, "%255s", fstype) != 1)
			continue;
		if (strcmp(mnt, real) == 0 &&
		    (prefix ? strncmp(fstype, want, strlen(want)) == 0
		            : strcmp(fstype, want) == 0))
			found = 1;
	}
	fclose(f);
	return found;
}

int mountpoint_is_secretfs(const char *path)
{
	return mounted_at(path, "fuse.secretfs", 0) == 1;
}

int mountpoint_maybe_secretfs(const char *path)
{
	return mounted_at(path, "fuse.secretfs", 0) != 0;
}

int mountpoint_make_dir(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return 0;
		log_error("%s is not a directory%s", path,
		          S_ISLNK(st.st_mode) ? " (a symbolic link)" : "");
		return SFS_EIO;
	}
	if (errno != ENOENT || mkdir_p(path) < 0) {
		log_error("cannot create directory %s: %s", path, strerror(errno));
		return SFS_EIO;
	}
	return 0;
}

int mountpoint_detach(const char *path)
{
	return umount2(path, MNT_DETACH) < 0 && run_fusermount_detach(path) < 0 ? -1 : 0;
}

static int detach_stale(const char *path)
{
	log_warn("mount point %s is a stale mount left by a dead instance; detaching it",
	         path);
	if (mountpoint_detach(path) < 0) {
		log_error("cannot detach the stale mount at %s", path);
		return SFS_EIO;
	}
	return 0;
}

int mountpoint_prepare(const char *path)
{
	struct statfs sfs;
	struct stat st;

	if (mountpoint_is_fd(path))
		return 0;
	/* The kernel may answer stat on a dead mount from its attribute cache;
	 * statfs always asks the daemon, so it tells live from dead. */
	if (mounted_at(path, "fuse", 1) == 1) {
		if (statfs(path, &sfs) == 0) {
			log_error("mount point %s: a running FUSE filesystem is already "
			          "mounted there",
			          path);
			return SFS_EIO;
		}
		if (errno != ENOTCONN && errno != ECONNABORTED) {
			log_error("mount point %s: %s", path, strerror(errno));
			return SFS_EIO;
		}
		if (detach_stale(path) < 0)
			return SFS_EIO;
	}
	if (stat(path, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			log_error("mount point %s is not a directory", path);
			return SFS_EIO;
		}
		return 0;
	}
	if (errno == ENOENT) {
		if (mkdir_p(path) < 0) {
			log_error("cannot create mount point %s: %s", path,
			          strerror(errno));
			return SFS_EIO;
		}
		return 0;
	}
	if (errno != ENOTCONN && errno != ECONNABORTED) {
		log_error("mount point %s: %s", path, strerror(errno));
		return SFS_EIO;
	}
	if (detach_stale(path) < 0)
		return SFS_EIO;
	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		log_error("mount point %s is still unusable after detaching", path);
		return SFS_EIO;
	}
	return 0;
}
