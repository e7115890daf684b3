/*
 * Unit tests of the metrics registry (stats.c): sets of a family share
 * their field table, totals sum over sets, a NULL registry or set is a
 * harmless no-op, and concurrent updates are not lost.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "secretfs/stats.h"
#include "test.h"

enum { F_READS, F_LEVEL };
static const struct stats_field fields[] = {
    [F_READS] = {STATS_COUNTER, "t_reads_total", "reads"},
    [F_LEVEL] = {STATS_GAUGE, "t_level", "a level"},
};
static const struct stats_family fam = {fields, 2, "source"};
static const struct stats_field single_fields[] = {
    {STATS_COUNTER, "t_single_total", "one"},
};
static const struct stats_family single = {single_fields, 1, NULL};

TEST(sets_count_on_their_own_and_totals_sum_them)
{
	struct stats *st = NULL;
	struct stats_set *a, *b;

	CHECK_EQ_INT(stats_new(&st), 0);
	a = stats_register(st, &fam, "vault:a");
	b = stats_register(st, &fam, "vault:b");
	CHECK(a && b && a != b);
	stats_inc(a, F_READS);
	stats_add(b, F_READS, 41);
	stats_set_value(a, F_LEVEL, -3);
	CHECK_EQ_INT(stats_get(a, F_READS), 1);
	CHECK_EQ_INT(stats_get(b, F_READS), 41);
	CHECK_EQ_INT(stats_get(a, F_LEVEL), -3);
	CHECK_EQ_INT(stats_total(st, "t_reads_total"), 42);
	CHECK_EQ_INT(stats_total(st, "no_such_metric"), 0);
	stats_free(st);
}

TEST(null_registry_and_set_do_nothing)
{
	struct stats_set *s = stats_register(NULL, &fam, "x");

	CHECK(s == NULL);
	stats_inc(s, F_READS);
	stats_set_value(s, F_LEVEL, 7);
	CHECK_EQ_INT(stats_get(s, F_READS), 0);
	CHECK_EQ_INT(stats_total(NULL, "t_reads_total"), 0);
	stats_free(NULL);
}

TEST(out_of_range_fields_are_ignored)
{
	struct stats *st = NULL;
	struct stats_set *s;

	CHECK_EQ_INT(stats_new(&st), 0);
	s = stats_register(st, &single, NULL);
	stats_inc(s, 5);
	CHECK_EQ_INT(stats_get(s, 5), 0);
	CHECK_EQ_INT(stats_total(st, "t_single_total"), 0);
	stats_free(st);
}

struct seen {
	int n;
	char text[256];
};

static void collect(void *arg, const struct stats_field *f, const char *label,
                    const char *value, int64_t v)
{
	struct seen *s = arg;
	size_t len = strlen(s->text);

	s->n++;
	snprintf(s->text + len, sizeof s->text - len, "%s{%s=%s}=%lld;", f->name,
	         label ? label : "-", value ? value : "-", (long long)v);
}

TEST(each_walks_sets_in_registration_order_and_fields_in_table_order)
{
	struct stats *st = NULL;
	struct seen s = {0};

	CHECK_EQ_INT(stats_new(&st), 0);
	stats_inc(stats_register(st, &fam, "one"), F_READS);
	stats_add(stats_register(st, &single, "ignored"), 0, 2);
	stats_each(st, collect, &s);
	CHECK_EQ_INT(s.n, 3);
	CHECK_STR_EQ(s.text, "t_reads_total{source=one}=1;t_level{source=one}=0;"
	                     "t_single_total{-=-}=2;");
	stats_free(st);
}

static void *bump(void *arg)
{
	for (int i = 0; i < 100000; i++)
		stats_inc(arg, F_READS);
	return NULL;
}

TEST(concurrent_updates_are_not_lost)
{
	struct stats *st = NULL;
	struct stats_set *s;
	pthread_t t[4];

	CHECK_EQ_INT(stats_new(&st), 0);
	s = stats_register(st, &fam, "busy");
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, bump, s);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ_INT(stats_get(s, F_READS), 400000);
	stats_free(st);
}

TEST_MAIN(sets_count_on_their_own_and_totals_sum_them, null_registry_and_set_do_nothing,
          out_of_range_fields_are_ignored,
          each_walks_sets_in_registration_order_and_fields_in_table_order,
          concurrent_updates_are_not_lost)
