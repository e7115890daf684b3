/*
 * The kernel's generic_permission() without ACLs (see fs_perm.h), as a
 * pure function over an object's mode and owner and a caller's ids.
 */
#include <errno.h>
#include <sys/stat.h>

#include "fs_perm.h"

static bool in_groups(const struct perm_caller *c, gid_t gid)
{
	if (c->gid == gid)
		return true;
	for (size_t i = 0; i < c->ngroups; i++)
		if (c->groups[i] == gid)
			return true;
	return false;
}

/* Group and other bits differ where it matters: membership decides. */
static bool group_decides(mode_t mode, int want)
{
	return ((unsigned)want & 7u & ((unsigned)mode ^ ((unsigned)mode >> 3))) != 0;
}

bool perm_needs_groups(const struct perm_obj *o, uid_t uid, gid_t gid, int want)
{
	return uid != 0 && uid != o->uid && gid != o->gid && group_decides(o->mode, want);
}

int perm_check(const struct perm_obj *o, const struct perm_caller *c, int want)
{
	unsigned mode = (unsigned)o->mode, bits;

	want &= 7;
	if (c->uid == o->uid)
		bits = mode >> 6;
	else if (group_decides(o->mode, want) && in_groups(c, o->gid))
		bits = mode >> 3;
	else
		bits = mode;
	if (!((unsigned)want & ~bits & 7u))
		return 0;
	if (c->uid != 0)
		return -EACCES;
	/* Capabilities, as root has them: directories are always readable and
	 * searchable; files readable and writable, executable when someone may
	 * execute them. */
	if (S_ISDIR(o->mode) || !(want & PERM_EXEC) || (mode & 0111))
		return 0;
	return -EACCES;
}
