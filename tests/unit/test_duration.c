/*
 * Unit tests of duration parsing (duration.c): every unit and combination
 * the config accepts, the malformed strings it refuses (leaving the output
 * alone), and JSON numbers of seconds.
 */
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>

#include "secretfs/duration.h"
#include "secretfs/error.h"
#include "test.h"

TEST(test_duration_strings)
{
	static const struct {
		const char *s;
		uint64_t ms;
	} cases[] = {
	    {"90s", 90000},    {"5m", 300000},
	    {"1h", 3600000},   {"1h30m", 5400000},
	    {"250ms", 250},    {"1.5h", 5400000},
	    {"2d", 172800000}, {"30", 30000},
	    {"0.25", 250},     {"0", 0},
	    {"0s", 0},         {"1m30s500ms", 90500},
	    {"1.5ms", 1},      {"3649d", 3649ull * 86400000},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint64_t ms = 12345;

		if (duration_parse_str(cases[i].s, &ms) != 0 || ms != cases[i].ms) {
			fprintf(stderr, "  duration %s -> %llu\n", cases[i].s,
			        (unsigned long long)ms);
			test_failed_ = 1;
		}
	}
}

TEST(test_duration_bad_strings)
{
	static const char *const cases[] = {
	    "",
	    "-5s",
	    "5 minutes",
	    "5x",
	    "1h30",
	    "h",
	    " 5s",
	    "5s ",
	    "1.s",
	    ".5s",
	    "5.5.5s",
	    "3651d",
	    "99999999999999999999s",
	    "5S",
	    "1e3s",
	    "0x10s",
	    "5sec",
	    "1.0000000001s",
	    "+5s",
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint64_t ms = 777;

		if (duration_parse_str(cases[i], &ms) != SFS_EINVAL || ms != 777) {
			fprintf(stderr, "  duration \"%s\" was accepted\n", cases[i]);
			test_failed_ = 1;
		}
	}
}

TEST(test_duration_json_values)
{
	json_t *v;
	uint64_t ms = 0;

	v = json_integer(90);
	CHECK_EQ_INT(duration_parse(v, &ms), 0);
	CHECK_EQ_INT(ms, 90000);
	json_decref(v);
	v = json_real(0.5);
	CHECK_EQ_INT(duration_parse(v, &ms), 0);
	CHECK_EQ_INT(ms, 500);
	json_decref(v);
	v = json_string("1h30m");
	CHECK_EQ_INT(duration_parse(v, &ms), 0);
	CHECK_EQ_INT(ms, 5400000);
	json_decref(v);
	v = json_integer(-1);
	CHECK_EQ_INT(duration_parse(v, &ms), SFS_EINVAL);
	json_decref(v);
	v = json_real(1e12);
	CHECK_EQ_INT(duration_parse(v, &ms), SFS_EINVAL);
	json_decref(v);
	v = json_true();
	CHECK_EQ_INT(duration_parse(v, &ms), SFS_EINVAL);
	json_decref(v);
	CHECK_EQ_INT(duration_parse(NULL, &ms), SFS_EINVAL);
	CHECK_EQ_INT(duration_parse_str(NULL, &ms), SFS_EINVAL);
}

TEST(test_duration_reasons_name_the_problem)
{
	uint64_t ms = 5;

	CHECK_STR_EQ(duration_from_string("5x", &ms),
	             "unknown unit (use ms, s, m, h or d)");
	CHECK_STR_EQ(duration_from_string("1h30", &ms), "missing unit");
	CHECK_STR_EQ(duration_from_seconds(-1, &ms), "must not be negative");
	CHECK_EQ_INT(ms, 5);
	CHECK(duration_from_string("1m", &ms) == NULL);
	CHECK_EQ_INT(ms, 60000);
}

TEST_MAIN(test_duration_strings, test_duration_bad_strings, test_duration_json_values,
          test_duration_reasons_name_the_problem)
