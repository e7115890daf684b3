/*
 * The encrypted store: a per-process XChaCha20-Poly1305 key held in guarded
 * memory, and sealed blobs of file content. The additional data of every
 * blob binds the file name and version, so a blob cannot be replayed under
 * another name or version. Ciphertext lives on the ordinary heap; plaintext
 * only ever in secmem.
 */
#ifndef SECRETFS_STORE_H
#define SECRETFS_STORE_H

#include <stddef.h>
#include <stdint.h>

struct store;
struct store_blob;

/* Creates a store with a fresh random key. Returns 0 or SFS_ENOMEM. */
int store_new(struct store **out);

/* Wipes the key and frees the store. NULL-safe. */
void store_free(struct store *st);

/*
 * Seals len bytes of plain as the content of (name, version). On success
 * *out is a new blob owned by the caller. Returns 0 or SFS_ENOMEM.
 */
int store_seal(struct store *st, const char *name, uint64_t version, const void *plain,
               size_t len, struct store_blob **out);

/*
 * Opens a blob that must have been sealed as (name, version). On success
 * *out is a secmem block of *len bytes (free with secmem_free(*out)).
 * Returns 0, SFS_ECRYPTO if the blob was tampered with or was sealed under
 * another name or version, or SFS_ENOMEM.
 */
int store_unseal(struct store *st, const struct store_blob *blob, const char *name,
                 uint64_t version, unsigned char **out, size_t *len);

/* Plaintext length of the blob's content. */
size_t store_blob_len(const struct store_blob *blob);

/* Raw sealed bytes: nonce, ciphertext, tag (for tests that tamper with them). */
unsigned char *store_blob_bytes(struct store_blob *blob, size_t *len);

/* Frees a blob. NULL-safe. */
void store_blob_free(struct store_blob *blob);

/*
 * A sealed slot for material a backend keeps between requests (a token,
 * credentials). Each put seals under (name, next version); the caller
 * serialises puts and gets on one slot.
 */
struct store_slot {
	struct store_blob *blob; /* NULL: empty */
	uint64_t version;
};

/* Seals len bytes of data into the slot, replacing what it held. */
int store_slot_put(struct store *st, struct store_slot *slot, const char *name,
                   const void *data, size_t len);

/* A NUL-terminated guarded copy of the slot's content: free it with
 * secmem_free(*out). Returns 0, SFS_ENOTFOUND (empty), SFS_ECRYPTO or
 * SFS_ENOMEM. */
int store_slot_get(struct store *st, const struct store_slot *slot, const char *name,
                   char **out);

/* Empties the slot. */
void store_slot_clear(struct store_slot *slot);

#endif
