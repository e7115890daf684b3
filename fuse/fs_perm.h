/*
 * Permission checks for a FUSE mount without default_permissions (audit on:
 * the kernel must let every open through so that refusals can be audited).
 * The same rules as the kernel's generic_permission() on an inode without
 * ACLs: the owner's bits for the owner, else the group's bits when the file's
 * group is the caller's fsgid or one of its supplementary groups, else the
 * others' bits; uid 0 stands for a caller holding CAP_DAC_OVERRIDE and
 * CAP_DAC_READ_SEARCH: it may read and search anything, and execute a file
 * that has at least one x bit.
 */
#ifndef SECRETFS_FS_PERM_H
#define SECRETFS_FS_PERM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* want: a mask of these (the values of R_OK, W_OK, X_OK). */
#define PERM_READ 4
#define PERM_WRITE 2
#define PERM_EXEC 1

/* An object's owner and mode (permission bits; S_IFDIR set for a directory). */
struct perm_obj {
	mode_t mode;
	uid_t uid;
	gid_t gid;
};

/* A caller: fsuid, fsgid and its supplementary groups (borrowed). */
struct perm_caller {
	uid_t uid;
	gid_t gid;
	const gid_t *groups;
	size_t ngroups;
};

/* Whether the answer for (o, c, want) depends on c's supplementary groups:
 * the caller is neither owner nor root, its fsgid is not the file's group,
 * and the group's bits differ from the others' in want. Callers fetch the
 * groups (a read of /proc) only then. */
bool perm_needs_groups(const struct perm_obj *o, uid_t uid, gid_t gid, int want);

/* 0 when c may access o for want (PERM_* bits; 0 always passes), else
 * -EACCES. Pure: no system call. */
int perm_check(const struct perm_obj *o, const struct perm_caller *c, int want);

#endif
