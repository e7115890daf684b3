/*
 * jansson allocator hooks that wipe every block when it is freed. Each block
 * carries a header with its size (padded to max_align_t so the caller's
 * pointer keeps malloc's alignment); the free hook zeroes header and payload
 * with sodium_memzero before handing the block back to free(). With these
 * installed, parsed backend replies, config strings and dump buffers leave
 * no plaintext behind in the heap.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>
#include <sodium.h>

#include "secretfs/secjson.h"
#include "secretfs/wipealloc.h"

/*
 * Installs the wiping allocator in jansson. Call once at start-up, before
 * any other jansson use (blocks must be freed by the allocator that made
 * them); calling it again is harmless.
 */
void secjson_init(void)
{
	json_set_alloc_funcs(wipe_malloc, wipe_free);
}

void secjson_free_buf(void *p)
{
	json_malloc_t m;
	json_free_t f;

	if (!p)
		return;
	json_get_alloc_funcs(&m, &f);
	f(p);
}
