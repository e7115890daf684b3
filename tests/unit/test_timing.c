/*
 * The scheduler's timing rules: backoff, first refresh, renewal and
 * replacement points, pinned at the ends of their random ranges.
 */
#include "secretfs/timing.h"
#include "test.h"

TEST(backoff_grows_exponentially_then_caps)
{
	/* u close to 1 gives the ceiling: base * 2^attempt, capped. */
	double top = 0.999999;
	CHECK(timing_backoff(0, 1000, 300000, 0, top) >= 999);
	CHECK(timing_backoff(0, 1000, 300000, 0, top) <= 1000);
	CHECK(timing_backoff(3, 1000, 300000, 0, top) >= 7999);
	CHECK(timing_backoff(3, 1000, 300000, 0, top) <= 8000);
	CHECK(timing_backoff(20, 1000, 300000, 0, top) <= 300000);
	CHECK(timing_backoff(20, 1000, 300000, 0, top) >= 299999);
	CHECK(timing_backoff(200, 1000, 300000, 0, top) <= 300000);
}

TEST(backoff_is_full_jitter)
{
	CHECK_EQ_INT(timing_backoff(5, 1000, 300000, 0, 0.0), 0);
	CHECK_EQ_INT(timing_backoff(5, 1000, 300000, 0, 0.5), 16000);
}

TEST(backoff_honours_retry_after)
{
	CHECK_EQ_INT(timing_backoff(0, 1000, 300000, 7000, 0.0), 7000);
	CHECK_EQ_INT(timing_backoff(0, 1000, 300000, 7000, 0.99), 7000);
	/* Retry-After beyond the cap still wins: the server knows best, */
	CHECK_EQ_INT(timing_backoff(0, 1000, 10000, 200000, 0.5), 200000);
	/* up to 5 minutes: an hour's pause would stop renewals. */
	CHECK_EQ_INT(timing_backoff(0, 1000, 300000, 600000, 0.5), 300000);
	CHECK_EQ_INT(timing_backoff_steady(30, 1000, 10000, 86400000, 0.5), 300000);
}

TEST(steady_backoff_is_a_narrow_band_at_the_cap)
{
	/* Below the cap: full jitter, as timing_backoff. */
	CHECK_EQ_INT(timing_backoff_steady(2, 1000, 10000, 0, 0.0), 0);
	CHECK_EQ_INT(timing_backoff_steady(2, 1000, 10000, 0, 0.5), 2000);
	/* At the cap: [3/4 cap, 5/4 cap], mean cap. */
	CHECK_EQ_INT(timing_backoff_steady(4, 1000, 10000, 0, 0.0), 7500);
	CHECK_EQ_INT(timing_backoff_steady(4, 1000, 10000, 0, 0.5), 10000);
	CHECK(timing_backoff_steady(40, 1000, 10000, 0, 0.999999) <= 12500);
	CHECK(timing_backoff_steady(40, 1000, 10000, 0, 0.999999) >= 12499);
	CHECK_EQ_INT(timing_backoff_steady(40, 1000, 10000, 20000, 0.5), 20000);
}

TEST(backoff_random_stays_in_range)
{
	for (int i = 0; i < 10000; i++) {
		double u = timing_random();
		CHECK(u >= 0.0 && u < 1.0);
		CHECK(timing_backoff(2, 1000, 300000, 0, u) <= 4000);
	}
}

TEST(first_refresh_is_a_phase_within_the_second_half)
{
	CHECK_EQ_INT(timing_first_refresh(60000, 0.0), 30000);
	CHECK(timing_first_refresh(60000, 0.999999) < 60000);
	CHECK(timing_first_refresh(60000, 0.999999) >= 59999);
}

TEST(renewal_lands_at_70_to_73_percent)
{
	uint64_t lease = 3600 * 1000;
	uint64_t lo = timing_renew_after(lease, 0.0),
	         hi = timing_renew_after(lease, 0.999999);

	/* 2/3 R + G/3 with G = 10..20% of R: 70.0% .. 73.3%. */
	CHECK(lo >= lease * 700 / 1000 - 1 && lo <= lease * 700 / 1000 + 1);
	CHECK(hi <= lease * 734 / 1000 && hi >= lease * 733 / 1000);
}

TEST(grace_is_10_to_20_percent)
{
	CHECK_EQ_INT(timing_grace(10000, 0.0), 1000);
	CHECK(timing_grace(10000, 0.999999) <= 2000);
	CHECK(timing_grace(10000, 0.999999) >= 1999);
}

TEST(replacement_lands_at_85_to_90_percent)
{
	CHECK_EQ_INT(timing_replace_after(10000, 0.0), 8500);
	CHECK(timing_replace_after(10000, 0.999999) <= 9000);
	CHECK(timing_replace_after(10000, 0.999999) >= 8999);
	/* Always before expiry, even for tiny leases. */
	CHECK(timing_replace_after(1000, 0.999999) < 1000);
}

TEST_MAIN(backoff_grows_exponentially_then_caps, backoff_is_full_jitter,
          backoff_honours_retry_after, steady_backoff_is_a_narrow_band_at_the_cap,
          backoff_random_stays_in_range, first_refresh_is_a_phase_within_the_second_half,
          renewal_lands_at_70_to_73_percent, grace_is_10_to_20_percent,
          replacement_lands_at_85_to_90_percent)
