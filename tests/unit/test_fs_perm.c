/*
 * Unit tests of perm_check (fuse/fs_perm.c) against a table of cases worked
 * out from the kernel's generic_permission(): owner, group (fsgid or a
 * supplementary group), other, and root's overrides.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

#include "fs_perm.h"
#include "test.h"

#define R PERM_READ
#define W PERM_WRITE
#define X PERM_EXEC
#define DIR_ S_IFDIR
#define REG S_IFREG

static const gid_t groups_50_60[] = {50, 60};

static const struct {
	const char *what;
	mode_t mode;
	uid_t fuid;
	gid_t fgid;
	uid_t uid;
	gid_t gid;
	const gid_t *groups;
	size_t ngroups;
	int want;
	int expect;
} cases[] = {
    {"owner reads 0400", REG | 0400, 1000, 1000, 1000, 1000, NULL, 0, R, 0},
    {"owner without r bit, others have it", REG | 0044, 1000, 1000, 1000, 1000, NULL, 0,
     R, -EACCES},
    {"other reads 0400", REG | 0400, 1000, 1000, 1001, 1001, NULL, 0, R, -EACCES},
    {"other reads 0404", REG | 0404, 1000, 1000, 1001, 1001, NULL, 0, R, 0},
    {"group by fsgid reads 0440", REG | 0440, 1000, 2000, 1001, 2000, NULL, 0, R, 0},
    {"group by supplementary reads 0440", REG | 0440, 1000, 60, 1001, 1001, groups_50_60,
     2, R, 0},
    {"not in group, 0440", REG | 0440, 1000, 70, 1001, 1001, groups_50_60, 2, R, -EACCES},
    {"group without r bit, others have it", REG | 0404, 1000, 60, 1001, 1001,
     groups_50_60, 2, R, -EACCES},
    {"others' bits for a non-member, 0444", REG | 0444, 1000, 70, 1001, 1001,
     groups_50_60, 2, R, 0},
    {"write is refused by the bits", REG | 0444, 1000, 1000, 1000, 1000, NULL, 0, W,
     -EACCES},
    {"nothing wanted passes", REG | 0000, 1000, 1000, 1001, 1001, NULL, 0, 0, 0},
    {"root reads 0000", REG | 0000, 1000, 1000, 0, 0, NULL, 0, R, 0},
    {"root writes 0000", REG | 0000, 1000, 1000, 0, 0, NULL, 0, W, 0},
    {"root executes 0000: no x bit", REG | 0000, 1000, 1000, 0, 0, NULL, 0, X, -EACCES},
    {"root executes 0001", REG | 0001, 1000, 1000, 0, 0, NULL, 0, X, 0},
    {"root searches a 0000 directory", DIR_ | 0000, 1000, 1000, 0, 0, NULL, 0, X, 0},
    {"root lists a 0000 directory", DIR_ | 0000, 1000, 1000, 0, 0, NULL, 0, R, 0},
    {"owner searches 0500 directory", DIR_ | 0500, 1000, 1000, 1000, 1000, NULL, 0, X, 0},
    {"owner searches 0400 directory", DIR_ | 0400, 1000, 1000, 1000, 1000, NULL, 0, X,
     -EACCES},
    {"other searches 0751 directory", DIR_ | 0751, 1000, 1000, 1001, 1001, NULL, 0, X, 0},
    {"other lists 0751 directory", DIR_ | 0751, 1000, 1000, 1001, 1001, NULL, 0, R,
     -EACCES},
    {"group lists 0750 directory", DIR_ | 0750, 1000, 50, 1001, 1001, groups_50_60, 2,
     R | X, 0},
    {"read and search need both bits", DIR_ | 0711, 1000, 1000, 1001, 1001, NULL, 0,
     R | X, -EACCES},
};

TEST(perm_check_agrees_with_generic_permission)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct perm_obj o = {cases[i].mode, cases[i].fuid, cases[i].fgid};
		struct perm_caller c = {cases[i].uid, cases[i].gid, cases[i].groups,
		                        cases[i].ngroups};
		int got = perm_check(&o, &c, cases[i].want);

		if (got != cases[i].expect)
			fprintf(stderr, "  case \"%s\": got %d, want %d\n", cases[i].what,
			        got, cases[i].expect);
		CHECK_EQ_INT(got, cases[i].expect);
	}
}

TEST(groups_are_needed_only_when_membership_decides)
{
	struct perm_obj o = {REG | 0440, 1000, 60};

	CHECK(perm_needs_groups(&o, 1001, 1001, R));
	CHECK(!perm_needs_groups(&o, 1000, 1001, R)); /* the owner */
	CHECK(!perm_needs_groups(&o, 1001, 60, R));   /* fsgid is the group */
	CHECK(!perm_needs_groups(&o, 0, 0, R));       /* root */
	o.mode = REG | 0444;
	CHECK(!perm_needs_groups(&o, 1001, 1001, R)); /* group bits = others' */
}

TEST_MAIN(perm_check_agrees_with_generic_permission,
          groups_are_needed_only_when_membership_decides)
