/* passes.h — graph passes and analyses (passes/).
 *
 *   plan_memory.c   liveness-based arena layout: offsets for buffers whose
 *                   lifetimes (kernel steps) are known
 *
 * The pass manager, the -O pipelines and the graph-to-graph passes arrive
 * with the optimisation work; each pass will be one file listed here. */
#ifndef KILN_PASSES_H
#define KILN_PASSES_H

#include "ir.h"

/* One buffer to place: live from kernel step `first` to `last` inclusive. */
typedef struct kiln_buffer {
	int64_t bytes;
	int first, last;
	int64_t offset; /* out: byte offset in the arena, a multiple of align */
} kiln_buffer;

/* Places the buffers so that two whose lifetimes overlap never overlap in
 * memory, greedily, largest first, each at the lowest offset that fits.
 * align must be a power of two. Returns the arena size (0 for no buffers),
 * or -1 if the total overflows. */
int64_t kiln_plan_buffers(kiln_buffer *b, int n, int64_t align);

#endif
