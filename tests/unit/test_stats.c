/*
 * Unit tests of the metrics registry (stats.c): sets of a family share
 * their field table, totals sum over sets, a NULL registry or set is a
 * harmless no-op, and concurrent updates are not lost.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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
    [0] = {STATS_COUNTER, "t_single_total", "one"},
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
	char text[1024];
};

static void collect(void *arg, const struct stats_sample *smp)
{
	struct seen *s = arg;
	size_t len = strlen(s->text);

	s->n++;
	len += (size_t)snprintf(s->text + len, sizeof s->text - len, "%s{%s=%s",
	                        smp->field->name, smp->label ? smp->label : "-",
	                        smp->value ? smp->value : "-");
	for (size_t d = 0; d < smp->ndims; d++)
		len += (size_t)snprintf(s->text + len, sizeof s->text - len, ",%s=%s",
		                        smp->dim_key[d], smp->dim_value[d]);
	len += (size_t)snprintf(s->text + len, sizeof s->text - len, "}=%lld",
	                        (long long)smp->v);
	if (smp->buckets)
		for (size_t b = 0; b < smp->field->nbounds; b++)
			len += (size_t)snprintf(
			    s->text + len, sizeof s->text - len, ",le%lld:%lld",
			    (long long)smp->field->bounds[b], (long long)smp->buckets[b]);
	if (smp->buckets)
		len += (size_t)snprintf(s->text + len, sizeof s->text - len, ",sum:%lld",
		                        (long long)smp->sum);
	snprintf(s->text + len, sizeof s->text - len, ";");
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

static const char *const ops[] = {"read", "renew", NULL};
static const char *const outcomes[] = {"ok", "denied", "unavailable", NULL};
static const struct stats_dim op_outcome[] = {
    {"operation", ops}, {"outcome", outcomes}, {NULL, NULL}};
static const int64_t bounds[] = {10, 100};
enum { G_REQUESTS, G_DURATION };
static const struct stats_field grid_fields[] = {
    [G_REQUESTS] = {STATS_COUNTER, "t_requests_total", "requests", op_outcome},
    [G_DURATION] = {STATS_HISTOGRAM, "t_seconds", "time", NULL, bounds, 2, 1e-6},
};
static const struct stats_family grid = {grid_fields, 2, "backend"};

TEST(fields_with_dims_count_per_cell_and_show_only_cells_that_moved)
{
	struct stats *st = NULL;
	struct stats_set *a;
	struct seen s = {0};

	CHECK_EQ_INT(stats_new(&st), 0);
	a = stats_register(st, &grid, "v");
	/* Before its first event a field with dims has no cells: it reads
	 * zero and exports nothing. */
	CHECK_EQ_INT(stats_get_at(a, G_REQUESTS, 5), 0);
	CHECK_EQ_INT(stats_total(st, "t_requests_total"), 0);
	stats_each(st, collect, &s);
	CHECK_STR_EQ(s.text, "t_seconds{backend=v}=0,le10:0,le100:0,sum:0;");
	memset(&s, 0, sizeof s);
	stats_inc_at(a, G_REQUESTS, 1 * 3 + 2); /* renew, unavailable */
	stats_add_at(a, G_REQUESTS, 0, 2);      /* read, ok */
	stats_inc_at(a, G_REQUESTS, 6);         /* out of range: ignored */
	stats_inc(a, G_DURATION);               /* a histogram is only observed */
	CHECK_EQ_INT(stats_get(a, G_REQUESTS), 3);
	CHECK_EQ_INT(stats_get_at(a, G_REQUESTS, 5), 1);
	stats_observe(a, G_DURATION, 5);
	stats_observe(a, G_DURATION, 10);
	stats_observe(a, G_DURATION, 50);
	stats_observe(a, G_DURATION, 5000);
	CHECK_EQ_INT(stats_get(a, G_DURATION), 4);
	stats_each(st, collect, &s);
	CHECK_STR_EQ(s.text,
	             "t_requests_total{backend=v,operation=read,outcome=ok}=2;"
	             "t_requests_total{backend=v,operation=renew,outcome=unavailable}=1;"
	             "t_seconds{backend=v}=4,le10:2,le100:3,sum:5065;");
	stats_free(st);
}

TEST(each_groups_the_series_of_one_metric_across_sets)
{
	struct stats *st = NULL;
	struct seen s = {0};

	CHECK_EQ_INT(stats_new(&st), 0);
	stats_inc(stats_register(st, &fam, "a"), F_READS);
	stats_inc(stats_register(st, &single, NULL), 0);
	stats_set_value(stats_register(st, &fam, "b"), F_LEVEL, 4);
	stats_each(st, collect, &s);
	CHECK_STR_EQ(s.text,
	             "t_reads_total{source=a}=1;t_reads_total{source=b}=0;"
	             "t_level{source=a}=0;t_level{source=b}=4;t_single_total{-=-}=1;");
	stats_free(st);
}

static const struct stats_dim too_many[] = {
    {"a", ops}, {"b", ops}, {"c", ops}, {NULL, NULL}};
static const struct stats_field bad_fields[] = {
    [0] = {STATS_COUNTER, "t_bad_total", "bad", too_many}};
static const struct stats_family bad = {bad_fields, 1, NULL};

TEST(a_malformed_table_registers_nothing)
{
	struct stats *st = NULL;

	CHECK_EQ_INT(stats_new(&st), 0);
	CHECK(stats_register(st, &bad, NULL) == NULL);
	stats_free(st);
}

TEST(registering_a_label_again_returns_its_first_set)
{
	struct stats *st = NULL;
	struct stats_set *a, *b;
	struct seen s = {0};

	CHECK_EQ_INT(stats_new(&st), 0);
	a = stats_register(st, &fam, "vault:a");
	stats_inc(a, F_READS);
	b = stats_register(st, &fam, "vault:a");
	CHECK(a && a == b);
	stats_inc(b, F_READS);
	CHECK(stats_register(st, &fam, "vault:b") != a);
	CHECK(stats_register(st, &single, NULL) == stats_register(st, &single, NULL));
	stats_each(st, collect, &s);
	CHECK_STR_EQ(s.text,
	             "t_reads_total{source=vault:a}=2;t_reads_total{source=vault:b}=0;"
	             "t_level{source=vault:a}=0;t_level{source=vault:b}=0;"
	             "t_single_total{-=-}=0;");
	stats_free(st);
}

/* Counts the samples and sums their values; checks the labels ("s<i>",
 * registered in order of i) come in registration order within each
 * metric. */
struct tally {
	long n, sum, next;
	const char *metric;
	int ordered;
};

static void tally(void *arg, const struct stats_sample *smp)
{
	struct tally *t = arg;
	long i =
	    smp->value && smp->value[0] == 's' ? strtol(smp->value + 1, NULL, 10) : -1;

	if (!t->metric || strcmp(t->metric, smp->field->name) != 0) {
		t->metric = smp->field->name;
		t->next = 0;
	}
	if (i < t->next)
		t->ordered = 0;
	t->next = i + 1;
	t->n++;
	t->sum += (long)smp->v;
}

TEST(many_sets_span_blocks_and_keep_their_order_and_lookups)
{
	enum { N = 5000 }; /* sets of several blocks, an index grown often */
	static struct stats_set *sets[N];
	struct stats *st = NULL;
	struct tally t = {.ordered = 1};
	char name[32];

	CHECK_EQ_INT(stats_new(&st), 0);
	for (long i = 0; i < N; i++) {
		snprintf(name, sizeof name, "s%ld", i);
		sets[i] = stats_register(st, i % 2 ? &grid : &fam, name);
		CHECK(sets[i] != NULL);
	}
	for (long i = 0; i < N; i++) {
		snprintf(name, sizeof name, "s%ld", i);
		CHECK(stats_register(st, i % 2 ? &grid : &fam, name) == sets[i]);
		if (i % 2)
			stats_inc_at(sets[i], G_REQUESTS, (size_t)i % 6);
		else
			stats_add(sets[i], F_READS, (uint64_t)i);
	}
	CHECK_EQ_INT(stats_total(st, "t_reads_total"), (long)(N / 2) * (N - 2) / 2);
	CHECK_EQ_INT(stats_total(st, "t_requests_total"), N / 2);
	stats_each(st, tally, &t);
	/* fam: 2 plain fields of N/2 sets; grid: N/2 request cells that
	 * moved and N/2 histograms. */
	CHECK_EQ_INT(t.n, 2 * (N / 2) + N / 2 + N / 2);
	CHECK(t.ordered);
	CHECK_EQ_INT(t.sum, (long)(N / 2) * (N - 2) / 2 + N / 2);
	stats_free(st);
}

static const struct stats_field cold_fields[] = {
    {STATS_COUNTER, "t_hot_total", "hot"},
    {STATS_COUNTER, "t_cold_total", "cold", .cold = true},
    {STATS_GAUGE, "t_cold", "cold gauge", .cold = true},
};
static const struct stats_family cold = {cold_fields, 3, "source"};

TEST(cold_fields_export_zero_until_their_first_event_and_count_after)
{
	struct stats *st = NULL;
	struct stats_set *a, *b;
	struct seen s = {0};

	CHECK_EQ_INT(stats_new(&st), 0);
	a = stats_register(st, &cold, "a");
	b = stats_register(st, &cold, "b");
	stats_inc(a, 0);
	stats_set_value(b, 2, 0); /* 0: no block needed */
	CHECK_EQ_INT(stats_get(a, 1), 0);
	stats_each(st, collect, &s);
	CHECK_STR_EQ(s.text, "t_hot_total{source=a}=1;t_hot_total{source=b}=0;"
	                     "t_cold_total{source=a}=0;t_cold_total{source=b}=0;"
	                     "t_cold{source=a}=0;t_cold{source=b}=0;");
	stats_add(b, 1, 5);
	stats_set_value(b, 2, -7);
	stats_inc(b, 1);
	CHECK_EQ_INT(stats_get(b, 1), 6);
	CHECK_EQ_INT(stats_get(b, 2), -7);
	CHECK_EQ_INT(stats_get(b, 0), 0);
	CHECK_EQ_INT(stats_get(a, 2), 0);
	CHECK_EQ_INT(stats_total(st, "t_cold_total"), 6);
	memset(&s, 0, sizeof s);
	stats_each(st, collect, &s);
	CHECK_STR_EQ(s.text, "t_hot_total{source=a}=1;t_hot_total{source=b}=0;"
	                     "t_cold_total{source=a}=0;t_cold_total{source=b}=6;"
	                     "t_cold{source=a}=0;t_cold{source=b}=-7;");
	stats_free(st);
}

TEST_MAIN(sets_count_on_their_own_and_totals_sum_them, null_registry_and_set_do_nothing,
          out_of_range_fields_are_ignored,
          each_walks_sets_in_registration_order_and_fields_in_table_order,
          concurrent_updates_are_not_lost,
          fields_with_dims_count_per_cell_and_show_only_cells_that_moved,
          each_groups_the_series_of_one_metric_across_sets,
          a_malformed_table_registers_nothing,
          registering_a_label_again_returns_its_first_set,
          many_sets_span_blocks_and_keep_their_order_and_lookups,
          cold_fields_export_zero_until_their_first_event_and_count_after)
