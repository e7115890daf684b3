/*
 * The encrypted store: one XChaCha20-Poly1305 key per process, made from
 * randombytes, held in sodium_malloc memory that is read-only after
 * creation. A blob is an ordinary heap struct holding the plaintext length,
 * then nonce || ciphertext || tag in one contiguous region (none of it is
 * secret). The additional data is the file name, a 0 byte, and the version
 * as 8 bytes little-endian, so a blob opens only under the name and version
 * it was sealed for. Seal and unseal only read the key, so they may run
 * concurrently on one store.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "secretfs/error.h"
#include "secretfs/secmem.h"
#include "secretfs/store.h"

#define STORE_KEYBYTES crypto_aead_xchacha20poly1305_ietf_KEYBYTES
#define STORE_NONCEBYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define STORE_TAGBYTES crypto_aead_xchacha20poly1305_ietf_ABYTES

struct store {
	unsigned char *key; /* sodium_malloc, read-only */
};

struct store_blob {
	size_t plain_len;
	size_t ct_len;          /* ciphertext + tag */
	unsigned char sealed[]; /* nonce, then ct_len bytes of ciphertext + tag */
};

/* Builds name || 0 || version (LE64) on the heap; the name is not secret. */
static unsigned char *store_ad(const char *name, uint64_t version, size_t *adlen)
{
	size_t n = strlen(name);
	unsigned char *ad;

	if (n > SIZE_MAX - 9)
		return NULL;
	ad = malloc(n + 9);
	if (!ad)
		return NULL;
	memcpy(ad, name, n);
	ad[n] = 0;
	for (size_t i = 0; i < 8; i++)
		ad[n + 1 + i] = (unsigned char)(version >> (8 * i));
	*adlen = n + 9;
	return ad;
}

/*
 * Creates a store with a fresh random key. *out is assigned only on success.
 * Returns 0 or SFS_ENOMEM.
 */
int store_new(struct store **out)
{
	struct store *st = NULL;
	int rc = SFS_ENOMEM;

	st = calloc(1, sizeof(*st));
	if (!st)
		goto out;
	st->key = sodium_malloc(STORE_KEYBYTES);
	if (!st->key)
		goto out;
	crypto_aead_xchacha20poly1305_ietf_keygen(st->key);
	sodium_mprotect_readonly(st->key);
	*out = st;
	st = NULL;
	rc = 0;
out:
	store_free(st);
	return rc;
}

/* Wipes the key (sodium_free) and frees the store. NULL-safe. */
void store_free(struct store *st)
{
	if (!st)
		return;
	sodium_free(st->key);
	free(st);
}

/*
 * Seals len bytes of plain (may be NULL when len is 0) under a fresh random
 * nonce, bound to (name, version). On success *out is a new blob owned by
 * the caller. Returns 0, SFS_ENOMEM, or SFS_EINVAL for NULL arguments.
 */
int store_seal(struct store *st, const char *name, uint64_t version, const void *plain,
               size_t len, struct store_blob **out)
{
	static const unsigned char empty[1];
	struct store_blob *blob = NULL;
	unsigned char *ad = NULL;
	size_t adlen = 0;
	unsigned long long ct_len = 0;
	int rc = SFS_EINVAL;

	if (!st || !name || !out || (!plain && len > 0))
		goto out;
	if (!plain)
		plain = empty;
	rc = SFS_ENOMEM;
	if (len > crypto_aead_xchacha20poly1305_ietf_MESSAGEBYTES_MAX ||
	    len > SIZE_MAX - sizeof(*blob) - STORE_NONCEBYTES - STORE_TAGBYTES)
		goto out;
	ad = store_ad(name, version, &adlen);
	if (!ad)
		goto out;
	blob = malloc(sizeof(*blob) + STORE_NONCEBYTES + len + STORE_TAGBYTES);
	if (!blob)
		goto out;
	blob->plain_len = len;
	randombytes_buf(blob->sealed, STORE_NONCEBYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(blob->sealed + STORE_NONCEBYTES,
	                                           &ct_len, plain, len, ad, adlen, NULL,
	                                           blob->sealed, st->key);
	blob->ct_len = (size_t)ct_len;
	*out = blob;
	blob = NULL;
	rc = 0;
out:
	free(ad);
	free(blob);
	return rc;
}

/*
 * Opens a blob sealed as (name, version) into a fresh secmem block.
 * On success *out holds *len bytes (free with secmem_free(*out); for
 * empty content *out is a 1-byte block and *len is 0). On failure nothing is
 * assigned and any partial plaintext is wiped. Returns 0, SFS_ECRYPTO
 * (tampered, or another name, version or key), SFS_ENOMEM or SFS_EINVAL.
 */
int store_unseal(struct store *st, const struct store_blob *blob, const char *name,
                 uint64_t version, unsigned char **out, size_t *len)
{
	unsigned char *ad = NULL, *plain = NULL;
	size_t adlen = 0, plain_len = 0;
	unsigned long long got = 0;
	int rc = SFS_EINVAL;

	if (!st || !blob || !name || !out || !len)
		goto out;
	rc = SFS_ECRYPTO;
	if (blob->ct_len < STORE_TAGBYTES ||
	    blob->ct_len - STORE_TAGBYTES != blob->plain_len)
		goto out;
	plain_len = blob->plain_len;
	rc = SFS_ENOMEM;
	ad = store_ad(name, version, &adlen);
	if (!ad)
		goto out;
	plain = secmem_alloc(plain_len);
	if (!plain)
		goto out;
	rc = SFS_ECRYPTO;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
	        plain, &got, NULL, blob->sealed + STORE_NONCEBYTES, blob->ct_len, ad,
	        adlen, blob->sealed, st->key) != 0 ||
	    got != plain_len)
		goto out;
	*out = plain;
	*len = plain_len;
	plain = NULL;
	rc = 0;
out:
	secmem_free(plain);
	free(ad);
	return rc;
}

/* Plaintext length of the blob's content. */
size_t store_blob_len(const struct store_blob *blob)
{
	return blob->plain_len;
}

/*
 * The blob's sealed bytes, for tests that tamper with them: the 24-byte
 * nonce, then the ciphertext, then the 16-byte tag. *len gets their total.
 */
unsigned char *store_blob_bytes(struct store_blob *blob, size_t *len)
{
	*len = STORE_NONCEBYTES + blob->ct_len;
	return blob->sealed;
}

/* Frees a blob (ciphertext only, so no wipe is needed). NULL-safe. */
void store_blob_free(struct store_blob *blob)
{
	free(blob);
}

int store_slot_put(struct store *st, struct store_slot *slot, const char *name,
                   const void *data, size_t len)
{
	struct store_blob *blob = NULL;
	int rc = store_seal(st, name, slot->version + 1, data, len, &blob);

	if (rc < 0)
		return rc;
	store_blob_free(slot->blob);
	slot->blob = blob;
	slot->version++;
	return 0;
}

int store_slot_get(struct store *st, const struct store_slot *slot, const char *name,
                   char **out)
{
	unsigned char *plain = NULL;
	size_t len = 0;
	int rc;

	if (!slot->blob)
		return SFS_ENOTFOUND;
	rc = store_unseal(st, slot->blob, name, slot->version, &plain, &len);
	if (rc < 0)
		return rc;
	/* Callers want a C string: copy into a block one byte longer. */
	*out = secmem_alloc(len + 1);
	if (*out)
		memcpy(*out, plain, len);
	secmem_free(plain);
	if (!*out)
		return SFS_ENOMEM;
	return 0;
}

void store_slot_clear(struct store_slot *slot)
{
	store_blob_free(slot->blob);
	slot->blob = NULL;
}
