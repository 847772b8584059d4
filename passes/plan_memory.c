/* plan_memory.c — arena layout from buffer lifetimes.
 *
 * Needs: each buffer's size and the first and last kernel step that touches
 * it. Gives: offsets in one arena. Greedy by size (the largest buffer is
 * placed first, at the lowest free offset among buffers it is live with):
 * simple, and within a few percent of optimal on CNN and transformer graphs.
 * O(n^2) in the number of buffers, which is fine for graphs of thousands. */
#include <stdlib.h>

#include "passes.h"

typedef struct placed {
	int64_t begin, end;
} placed;

typedef struct order {
	int64_t bytes;
	int first, i;
} order;

static int by_size(const void *pa, const void *pb)
{
	const order *a = pa, *b = pb;
	if (a->bytes != b->bytes)
		return a->bytes > b->bytes ? -1 : 1;
	if (a->first != b->first)
		return a->first < b->first ? -1 : 1;
	return a->i - b->i;
}

static int by_begin(const void *pa, const void *pb)
{
	const placed *a = pa, *b = pb;
	return a->begin < b->begin ? -1 : a->begin > b->begin;
}

int64_t kiln_plan_buffers(kiln_buffer *b, int n, int64_t align)
{
	if (n <= 0)
		return 0;
	order *idx = malloc((size_t)n * sizeof *idx);
	int *done = malloc((size_t)n * sizeof *done);
	placed *live = malloc((size_t)n * sizeof *live);
	if (!idx || !done || !live) {
		free(idx);
		free(done);
		free(live);
		return -1;
	}
	for (int i = 0; i < n; i++)
		idx[i] = (order){b[i].bytes, b[i].first, i};
	qsort(idx, (size_t)n, sizeof *idx, by_size);

	int64_t total = 0;
	int n_done = 0;
	for (int k = 0; k < n; k++) {
		kiln_buffer *cur = &b[idx[k].i];
		int64_t size = (cur->bytes + align - 1) & ~(align - 1);
		int n_live = 0;
		for (int j = 0; j < n_done; j++) {
			const kiln_buffer *o = &b[done[j]];
			if (o->first <= cur->last && cur->first <= o->last && o->bytes > 0)
				live[n_live++] = (placed){o->offset, o->offset + o->bytes};
		}
		qsort(live, (size_t)n_live, sizeof *live, by_begin);
		int64_t at = 0;
		for (int j = 0; j < n_live; j++) {
			if (live[j].begin >= at + size)
				break;
			int64_t end = (live[j].end + align - 1) & ~(align - 1);
			if (end > at)
				at = end;
		}
		cur->offset = at;
		if (at > INT64_MAX - size) {
			total = -1;
			break;
		}
		if (at + size > total)
			total = at + size;
		done[n_done++] = idx[k].i;
	}
	free(idx);
	free(done);
	free(live);
	return total;
}
