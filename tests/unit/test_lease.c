/*
 * Unit tests of the renew-or-replace policy (lease.c), shared by the
 * scheduler's leases and the Vault token: renew at 70-73 % of what is left
 * while renewing helps, replace at 85-90 % of the whole life otherwise.
 */
#include <stdint.h>

#include "secretfs/lease.h"
#include "test.h"

#define HOUR (3600ull * 1000)

TEST(renewable_lease_is_renewed_at_70_to_73_percent_of_what_is_left)
{
	struct lease_terms t = {.issued = 1000, .life_ms = HOUR, .renewable = true};
	uint64_t due = 0;

	CHECK_EQ_INT(lease_next(&t, 1000, HOUR, 0.0, &due), LEASE_RENEW);
	CHECK(due >= 1000 + HOUR * 700 / 1000 - 1 && due <= 1000 + HOUR * 700 / 1000 + 1);
	CHECK_EQ_INT(lease_next(&t, 1000, HOUR, 0.999999, &due), LEASE_RENEW);
	CHECK(due <= 1000 + HOUR * 734 / 1000);
}

TEST(non_renewable_lease_is_replaced_at_85_to_90_percent_of_its_life)
{
	struct lease_terms t = {.issued = 5000, .life_ms = 10000, .renewable = false};
	uint64_t due = 0;

	CHECK_EQ_INT(lease_next(&t, 5000, 10000, 0.0, &due), LEASE_REPLACE);
	CHECK_EQ_INT(due, 5000 + 8500);
	CHECK_EQ_INT(lease_next(&t, 5000, 10000, 0.999999, &due), LEASE_REPLACE);
	CHECK(due <= 5000 + 9000 && due >= 5000 + 8999);
}

TEST(capped_lease_counts_its_life_from_when_it_was_issued)
{
	/* Issued at 0 for an hour, renewed at 40 min for only 10 more: the
	 * whole life is 50 min, replaced at 42.5-45 min. */
	struct lease_terms t = {
	    .issued = 0, .life_ms = HOUR, .renewable = true, .capped = true};
	uint64_t now = 40 * 60 * 1000, due = 0;

	CHECK_EQ_INT(lease_next(&t, now, 10 * 60 * 1000, 0.0, &due), LEASE_REPLACE);
	CHECK_EQ_INT(due, 50 * 60 * 1000 * 85 / 100);
}

TEST(lease_within_four_graces_of_its_end_is_replaced_not_renewed)
{
	/* grace(1 h) is at least 6 min: 24 min or less left cannot be renewed
	 * far enough. */
	struct lease_terms t = {.issued = 0, .life_ms = HOUR, .renewable = true};
	uint64_t due = 0;

	CHECK_EQ_INT(lease_next(&t, 0, 24 * 60 * 1000, 0.5, &due), LEASE_REPLACE);
	CHECK_EQ_INT(lease_next(&t, 0, 25 * 60 * 1000, 0.5, &due), LEASE_RENEW);
}

TEST(a_replacement_already_overdue_is_due_now)
{
	struct lease_terms t = {.issued = 0, .life_ms = 10000, .renewable = false};
	uint64_t due = 0;

	/* At 9.5 s of a 10 s lease: past 85-90 %, so at once. */
	CHECK_EQ_INT(lease_next(&t, 9500, 500, 0.5, &due), LEASE_REPLACE);
	CHECK_EQ_INT(due, 9500);
}

TEST(a_lease_issued_after_now_counts_from_now)
{
	struct lease_terms t = {.issued = 20000, .life_ms = 10000, .renewable = false};
	uint64_t due = 0;

	CHECK_EQ_INT(lease_next(&t, 10000, 10000, 0.0, &due), LEASE_REPLACE);
	CHECK_EQ_INT(due, 10000 + 8500);
}

TEST_MAIN(renewable_lease_is_renewed_at_70_to_73_percent_of_what_is_left,
          non_renewable_lease_is_replaced_at_85_to_90_percent_of_its_life,
          capped_lease_counts_its_life_from_when_it_was_issued,
          lease_within_four_graces_of_its_end_is_replaced_not_renewed,
          a_replacement_already_overdue_is_due_now,
          a_lease_issued_after_now_counts_from_now)
