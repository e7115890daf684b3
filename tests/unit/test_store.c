/*
 * Unit tests for the encrypted store (store.c), the guarded allocator and
 * its growable buffer (secmem.c), the wiping jansson allocator (secjson.c)
 * and the error names (error.c).
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "secretfs/error.h"
#include "secretfs/secjson.h"
#include "secretfs/secmem.h"
#include "secretfs/store.h"
#include "test.h"

static struct store *new_store(void)
{
	struct store *st = NULL;

	secjson_init();
	if (secmem_init() != 0)
		abort();
	if (store_new(&st) != 0)
		abort();
	return st;
}

static void fill_pattern(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)((i * 31u + seed * 7u + 1u) & 0xff);
}

static int all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return 0;
	return 1;
}

TEST(test_init_is_repeatable)
{
	secjson_init();
	CHECK_EQ_INT(secmem_init(), 0);
	CHECK_EQ_INT(secmem_init(), 0);
}

TEST(test_seal_unseal_round_trip_sizes)
{
	static const size_t sizes[] = {0, 1, 255, 256, 257, 4096, 65536, 70000};
	struct store *st = new_store();

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n = sizes[k], got_len = 12345;
		unsigned char *plain = malloc(n ? n : 1), *got = NULL;
		struct store_blob *blob = NULL;

		fill_pattern(plain, n, (unsigned)k);
		CHECK_EQ_INT(store_seal(st, "db/password", 7, plain, n, &blob), 0);
		CHECK(blob != NULL);
		CHECK_EQ_INT(store_blob_len(blob), n);
		CHECK_EQ_INT(store_unseal(st, blob, "db/password", 7, &got, &got_len), 0);
		CHECK(got != NULL);
		CHECK_EQ_INT(got_len, n);
		CHECK(got && memcmp(got, plain, n) == 0);
		secmem_free(got);
		store_blob_free(blob);
		free(plain);
	}
	store_free(st);
}

TEST(test_seal_accepts_null_for_empty_content)
{
	struct store *st = new_store();
	struct store_blob *blob = NULL;
	unsigned char *got = NULL;
	size_t got_len = 99;

	CHECK_EQ_INT(store_seal(st, "empty", 1, NULL, 0, &blob), 0);
	CHECK_EQ_INT(store_unseal(st, blob, "empty", 1, &got, &got_len), 0);
	CHECK(got != NULL);
	CHECK_EQ_INT(got_len, 0);
	secmem_free(got);
	store_blob_free(blob);
	store_free(st);
}

TEST(test_sealed_bytes_are_nonce_ciphertext_and_tag)
{
	struct store *st = new_store();
	struct store_blob *blob = NULL;
	size_t len = 0;

	CHECK_EQ_INT(store_seal(st, "f", 1, "hello", 5, &blob), 0);
	CHECK(store_blob_bytes(blob, &len) != NULL);
	CHECK_EQ_INT(len, 24 + 5 + 16);
	store_blob_free(blob);
	store_free(st);
}

/* Flips one bit at offset off (negative: from the end) and expects ECRYPTO. */
static void check_tamper(long off)
{
	struct store *st = new_store();
	struct store_blob *blob = NULL;
	unsigned char *bytes, *got = NULL;
	size_t len = 0, got_len = 0, before;
	const char secret[] = "correct horse battery staple";

	CHECK_EQ_INT(store_seal(st, "api-key", 3, secret, sizeof(secret) - 1, &blob), 0);
	bytes = store_blob_bytes(blob, &len);
	bytes[off < 0 ? (long)len + off : off] ^= 0x01;
	before = secmem_arena_bytes_in_use();
	CHECK_EQ_INT(store_unseal(st, blob, "api-key", 3, &got, &got_len), SFS_ECRYPTO);
	CHECK(got == NULL);
	CHECK_EQ_INT(secmem_arena_bytes_in_use(), before);
	store_blob_free(blob);
	store_free(st);
}

TEST(test_unseal_detects_flipped_ciphertext_byte)
{
	check_tamper(24 + 3);
}

TEST(test_unseal_detects_flipped_nonce_byte)
{
	check_tamper(0);
}

TEST(test_unseal_detects_flipped_tag_byte)
{
	check_tamper(-1);
}

TEST(test_unseal_detects_flipped_byte_in_empty_content)
{
	struct store *st = new_store();
	struct store_blob *blob = NULL;
	unsigned char *bytes, *got = NULL;
	size_t len = 0, got_len = 0;

	CHECK_EQ_INT(store_seal(st, "e", 1, "", 0, &blob), 0);
	bytes = store_blob_bytes(blob, &len);
	bytes[len - 5] ^= 0x80;
	CHECK_EQ_INT(store_unseal(st, blob, "e", 1, &got, &got_len), SFS_ECRYPTO);
	store_blob_free(blob);
	store_free(st);
}

TEST(test_unseal_rejects_wrong_name)
{
	struct store *st = new_store();
	struct store_blob *blob = NULL;
	unsigned char *got = NULL;
	size_t got_len = 0;

	CHECK_EQ_INT(store_seal(st, "db/password", 2, "s3cret", 6, &blob), 0);
	CHECK_EQ_INT(store_unseal(st, blob, "db/username", 2, &got, &got_len),
	             SFS_ECRYPTO);
	CHECK_EQ_INT(store_unseal(st, blob, "db/passwor", 2, &got, &got_len),
	             SFS_ECRYPTO);
	CHECK_EQ_INT(store_unseal(st, blob, "db/password2", 2, &got, &got_len),
	             SFS_ECRYPTO);
	CHECK(got == NULL);
	store_blob_free(blob);
	store_free(st);
}

TEST(test_unseal_rejects_wrong_version)
{
	struct store *st = new_store();
	struct store_blob *blob = NULL;
	unsigned char *got = NULL;
	size_t got_len = 0;

	CHECK_EQ_INT(store_seal(st, "db/password", 2, "s3cret", 6, &blob), 0);
	CHECK_EQ_INT(store_unseal(st, blob, "db/password", 3, &got, &got_len),
	             SFS_ECRYPTO);
	CHECK_EQ_INT(
	    store_unseal(st, blob, "db/password", 2 + (1ull << 40), &got, &got_len),
	    SFS_ECRYPTO);
	CHECK(got == NULL);
	store_blob_free(blob);
	store_free(st);
}

TEST(test_unseal_rejects_blob_of_another_store)
{
	struct store *a = new_store(), *b = new_store();
	struct store_blob *blob = NULL;
	unsigned char *got = NULL;
	size_t got_len = 0;

	CHECK_EQ_INT(store_seal(a, "x", 1, "value", 5, &blob), 0);
	CHECK_EQ_INT(store_unseal(b, blob, "x", 1, &got, &got_len), SFS_ECRYPTO);
	store_blob_free(blob);
	store_free(a);
	store_free(b);
}

TEST(test_two_seals_of_same_plaintext_differ)
{
	struct store *st = new_store();
	struct store_blob *b1 = NULL, *b2 = NULL;
	unsigned char *p1, *p2;
	size_t l1 = 0, l2 = 0;

	CHECK_EQ_INT(store_seal(st, "n", 1, "same plaintext", 14, &b1), 0);
	CHECK_EQ_INT(store_seal(st, "n", 1, "same plaintext", 14, &b2), 0);
	p1 = store_blob_bytes(b1, &l1);
	p2 = store_blob_bytes(b2, &l2);
	CHECK_EQ_INT(l1, l2);
	CHECK(memcmp(p1, p2, 24) != 0);
	CHECK(memcmp(p1 + 24, p2 + 24, l1 - 24) != 0);
	store_blob_free(b1);
	store_blob_free(b2);
	store_free(st);
}

TEST(test_plaintext_does_not_appear_in_sealed_bytes)
{
	struct store *st = new_store();
	struct store_blob *blob = NULL;
	const char secret[] = "postgres://app:hunter2-hunter2@db/app";
	unsigned char *bytes;
	size_t len = 0;

	CHECK_EQ_INT(store_seal(st, "url", 1, secret, strlen(secret), &blob), 0);
	bytes = store_blob_bytes(blob, &len);
	CHECK(memmem(bytes, len, secret, strlen(secret)) == NULL);
	CHECK(memmem(bytes, len, "hunter2", 7) == NULL);
	store_blob_free(blob);
	store_free(st);
}

TEST(test_free_functions_accept_null)
{
	store_free(NULL);
	store_blob_free(NULL);
	secmem_free(NULL);
	CHECK(1);
}

TEST(test_secmem_blocks_are_zero_filled)
{
	static const size_t sizes[] = {0, 1, 100, 256, 1000, 65536, 65537, 200000};

	secmem_init();
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n = sizes[k];
		unsigned char *p = secmem_alloc(n);
		CHECK(p != NULL);
		CHECK(p && all_zero(p, n ? n : 1));
		if (p)
			memset(p, 0xa5, n ? n : 1);
		secmem_free(p);
	}
}

TEST(test_secmem_free_wipes_the_block)
{
	size_t before, n = 1000;
	unsigned char *p, *q;

	secmem_init();
	before = secmem_arena_bytes_in_use();
	p = secmem_alloc(n);
	CHECK(p != NULL);
	CHECK_EQ_INT(secmem_arena_bytes_in_use(), before + 1024);
	memset(p, 0x5a, n);
	secmem_free(p);
	CHECK_EQ_INT(secmem_arena_bytes_in_use(), before);
	q = secmem_alloc(n);
	/* First fit with nothing else running: the same units come back. */
	CHECK(q == p);
	CHECK(q && all_zero(q, n));
	secmem_free(q);
	CHECK_EQ_INT(secmem_arena_bytes_in_use(), before);
}

TEST(test_secmem_large_blocks_bypass_the_arenas)
{
	size_t before;
	unsigned char *p;

	secmem_init();
	before = secmem_arena_bytes_in_use();
	p = secmem_alloc(70000);
	CHECK(p != NULL);
	CHECK_EQ_INT(secmem_arena_bytes_in_use(), before);
	if (p) {
		memset(p, 0x11, 70000);
		secmem_free(p);
	}
}

TEST(test_secmem_falls_back_when_arenas_are_full)
{
	/* 16 arenas of 256 KiB hold 64 blocks of 64 KiB; ask for more. */
	enum { N = 80, SZ = 64 * 1024 };
	unsigned char *blocks[N];
	size_t before;

	secmem_init();
	before = secmem_arena_bytes_in_use();
	for (int i = 0; i < N; i++) {
		blocks[i] = secmem_alloc(SZ);
		CHECK(blocks[i] != NULL);
		CHECK(blocks[i] && all_zero(blocks[i], SZ));
		if (blocks[i])
			memset(blocks[i], i + 1, SZ);
	}
	CHECK(secmem_arena_bytes_in_use() <= 16u * 256u * 1024u);
	for (int i = 0; i < N; i++) {
		CHECK(blocks[i] && blocks[i][0] == (unsigned char)(i + 1) &&
		      blocks[i][SZ - 1] == (unsigned char)(i + 1));
		secmem_free(blocks[i]);
	}
	CHECK_EQ_INT(secmem_arena_bytes_in_use(), before);
}

TEST(test_secmem_free_with_wrong_length_still_wipes_whole_block)
{
	size_t before;
	unsigned char *p, *q;

	secmem_init();
	before = secmem_arena_bytes_in_use();
	p = secmem_alloc(2000);
	CHECK(p != NULL);
	if (!p)
		return;
	memset(p, 0x77, 2000);
	secmem_free(p);
	CHECK_EQ_INT(secmem_arena_bytes_in_use(), before);
	q = secmem_alloc(2000);
	CHECK(q == p);
	CHECK(q && all_zero(q, 2000));
	secmem_free(q);
}

TEST(test_secmem_double_free_aborts)
{
	pid_t pid;
	int status = 0;

	secmem_init();
	pid = fork();
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		unsigned char *p = secmem_alloc(100);
		dup2(fd, 2);
		secmem_free(p);
		secmem_free(p);
		_exit(0);
	}
	CHECK(pid > 0);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
}

TEST(test_secbuf_appends_and_grows)
{
	struct secbuf b;
	unsigned char chunk[100];
	size_t before;

	secmem_init();
	before = secmem_arena_bytes_in_use();
	secbuf_init(&b, 1 << 20);
	CHECK(b.data == NULL && b.len == 0);
	for (int i = 0; i < 1000; i++) {
		fill_pattern(chunk, sizeof(chunk), (unsigned)i);
		CHECK_EQ_INT(secbuf_append(&b, chunk, sizeof(chunk)), 0);
	}
	CHECK_EQ_INT(b.len, 100000);
	CHECK(b.cap >= b.len && b.cap <= b.max);
	for (int i = 0; i < 1000; i++) {
		fill_pattern(chunk, sizeof(chunk), (unsigned)i);
		CHECK(memcmp(b.data + i * 100, chunk, sizeof(chunk)) == 0);
	}
	CHECK_EQ_INT(secbuf_puts(&b, "tail"), 0);
	CHECK(memcmp(b.data + 100000, "tail", 4) == 0);
	CHECK_EQ_INT(secbuf_append(&b, NULL, 0), 0);
	secbuf_release(&b);
	CHECK(b.data == NULL && b.len == 0 && b.cap == 0 && b.max == 1 << 20);
	CHECK_EQ_INT(secmem_arena_bytes_in_use(), before);
	CHECK_EQ_INT(secbuf_puts(&b, "again"), 0);
	CHECK_EQ_INT(b.len, 5);
	secbuf_release(&b);
}

TEST(test_secbuf_enforces_its_cap)
{
	struct secbuf b;

	secmem_init();
	secbuf_init(&b, 10);
	CHECK_EQ_INT(secbuf_puts(&b, "0123456"), 0);
	CHECK_EQ_INT(secbuf_puts(&b, "7890"), SFS_ETOOBIG);
	CHECK_EQ_INT(b.len, 7);
	CHECK(memcmp(b.data, "0123456", 7) == 0);
	CHECK_EQ_INT(secbuf_puts(&b, "789"), 0);
	CHECK_EQ_INT(b.len, 10);
	CHECK(b.cap <= 10);
	CHECK_EQ_INT(secbuf_append(&b, "x", 1), SFS_ETOOBIG);
	CHECK_EQ_INT(secbuf_append(&b, "x", SIZE_MAX), SFS_ETOOBIG);
	secbuf_release(&b);

	secbuf_init(&b, 0);
	CHECK_EQ_INT(secbuf_append(&b, "x", 1), SFS_ETOOBIG);
	secbuf_release(&b);
}

struct worker {
	unsigned seed;
	int failures;
};

static void *secmem_worker(void *arg)
{
	enum { LIVE = 32, ROUNDS = 4000 };
	struct worker *w = arg;
	unsigned char *p[LIVE] = {0};
	size_t len[LIVE] = {0};
	unsigned tag[LIVE] = {0};
	unsigned seed = w->seed;

	for (int r = 0; r < ROUNDS; r++) {
		int i = (int)(rand_r(&seed) % LIVE);
		if (p[i]) {
			unsigned char want[8];
			for (size_t k = 0; k < len[i]; k += 97) {
				fill_pattern(want, 1, tag[i] + (unsigned)k);
				if (p[i][k] != want[0])
					w->failures++;
			}
			secmem_free(p[i]);
			p[i] = NULL;
		} else {
			size_t n = (size_t)(rand_r(&seed) % 5000);
			if (rand_r(&seed) % 50 == 0)
				n = 66000 + (size_t)(rand_r(&seed) % 1000);
			p[i] = secmem_alloc(n);
			len[i] = n;
			if (!p[i] || !all_zero(p[i], n)) {
				w->failures++;
				continue;
			}
			tag[i] = (unsigned)rand_r(&seed);
			for (size_t k = 0; k < n; k += 97)
				fill_pattern(p[i] + k, 1, tag[i] + (unsigned)k);
		}
	}
	for (int i = 0; i < LIVE; i++)
		secmem_free(p[i]);
	return NULL;
}

TEST(test_secmem_concurrent_alloc_free)
{
	pthread_t th[4];
	struct worker w[4];
	size_t before;

	secmem_init();
	before = secmem_arena_bytes_in_use();
	for (int i = 0; i < 4; i++) {
		w[i].seed = 1234u + (unsigned)i;
		w[i].failures = 0;
		CHECK_EQ_INT(pthread_create(&th[i], NULL, secmem_worker, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ_INT(w[i].failures, 0);
	}
	CHECK_EQ_INT(secmem_arena_bytes_in_use(), before);
}

TEST(test_secjson_allocator_round_trips_documents)
{
	json_error_t jerr;
	json_free_t free_fn = NULL;
	json_t *v;
	char *text;

	secjson_init();
	json_get_alloc_funcs(NULL, &free_fn);
	v = json_loads("{\"user\":\"app\",\"n\":[1,2,3]}", 0, &jerr);
	CHECK(v != NULL);
	text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
	CHECK_STR_EQ(text, "{\"n\":[1,2,3],\"user\":\"app\"}");
	/* Text from json_dumps belongs to jansson's (wiping) allocator. */
	CHECK(free_fn != NULL && free_fn != free);
	if (free_fn)
		free_fn(text);
	json_decref(v);
}

TEST(test_strerror_names_every_code)
{
	for (int e = SFS_EEXPIRED; e <= SFS_OK; e++) {
		const char *s = sfs_strerror(e);
		CHECK(s != NULL && s[0] != '\0');
		CHECK(strcmp(s, "unknown error") != 0);
	}
	CHECK_STR_EQ(sfs_strerror(SFS_ECRYPTO), "authentication of sealed data failed");
	CHECK_STR_EQ(sfs_strerror(-999), "unknown error");
	CHECK_STR_EQ(sfs_strerror(5), "unknown error");
}

TEST_MAIN(test_init_is_repeatable, test_seal_unseal_round_trip_sizes,
          test_seal_accepts_null_for_empty_content,
          test_sealed_bytes_are_nonce_ciphertext_and_tag,
          test_unseal_detects_flipped_ciphertext_byte,
          test_unseal_detects_flipped_nonce_byte, test_unseal_detects_flipped_tag_byte,
          test_unseal_detects_flipped_byte_in_empty_content,
          test_unseal_rejects_wrong_name, test_unseal_rejects_wrong_version,
          test_unseal_rejects_blob_of_another_store,
          test_two_seals_of_same_plaintext_differ,
          test_plaintext_does_not_appear_in_sealed_bytes, test_free_functions_accept_null,
          test_secmem_blocks_are_zero_filled, test_secmem_free_wipes_the_block,
          test_secmem_large_blocks_bypass_the_arenas,
          test_secmem_falls_back_when_arenas_are_full,
          test_secmem_free_with_wrong_length_still_wipes_whole_block,
          test_secmem_double_free_aborts, test_secbuf_appends_and_grows,
          test_secbuf_enforces_its_cap, test_secmem_concurrent_alloc_free,
          test_secjson_allocator_round_trips_documents, test_strerror_names_every_code)
