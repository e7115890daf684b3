/*
 * Makes every jansson allocation wipe itself when freed, so that parsed
 * backend replies and config strings leave no plaintext in the heap.
 * Call once at start-up, before any other jansson use.
 */
#ifndef SECRETFS_SECJSON_H
#define SECRETFS_SECJSON_H

void secjson_init(void);

/* Frees (and wipes) a buffer jansson allocated, such as json_dumps()'s
 * result: it must go back to jansson's allocator, not free(). NULL-safe. */
void secjson_free_buf(void *p);

#endif
