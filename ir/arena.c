/* arena.c — chunked bump allocator owning a graph's memory.
 * Small requests share 64 KiB chunks; large ones (weights) get a chunk of
 * their own, so a big model wastes little. Freed all at once. */
#include "ir.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN 64
#define ARENA_CHUNK (64 * 1024)

typedef struct chunk {
	struct chunk *next;
	size_t size, used; /* bytes of payload after the header */
} chunk;

struct kiln_arena {
	kiln_allocator alloc;
	chunk *head;
	size_t total;
};

static void *sys_alloc(void *user, size_t size) { (void)user; return malloc(size); }
static void sys_free(void *user, void *p) { (void)user; free(p); }

/* Payload starts ARENA_ALIGN bytes after the (malloc-aligned) chunk start. */
static char *payload(chunk *c) { return (char *)c + ARENA_ALIGN; }

kiln_arena *kiln_arena_create(const kiln_allocator *a)
{
	kiln_allocator al = a ? *a : (kiln_allocator){sys_alloc, sys_free, NULL};
	kiln_arena *ar = al.alloc(al.user, sizeof *ar);
	if (!ar)
		return NULL;
	memset(ar, 0, sizeof *ar);
	ar->alloc = al;
	return ar;
}

void kiln_arena_destroy(kiln_arena *a)
{
	if (!a)
		return;
	for (chunk *c = a->head, *next; c; c = next) {
		next = c->next;
		a->alloc.free(a->alloc.user, c);
	}
	a->alloc.free(a->alloc.user, a);
}

static chunk *new_chunk(kiln_arena *a, size_t size)
{
	/* ARENA_ALIGN slack: malloc only guarantees 16-byte alignment. */
	if (size > SIZE_MAX - 2 * ARENA_ALIGN)
		return NULL;
	void *raw = a->alloc.alloc(a->alloc.user, size + 2 * ARENA_ALIGN);
	if (!raw)
		return NULL;
	chunk *c = raw;
	c->size = size + ARENA_ALIGN;
	c->used = 0;
	return c;
}

void *kiln_arena_alloc(kiln_arena *a, size_t size)
{
	size_t need = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	if (need == 0)
		need = ARENA_ALIGN;
	if (need < size)
		return NULL;
	chunk *c = a->head;
	uintptr_t base = 0;
	if (c) {
		base = ((uintptr_t)payload(c) + c->used + ARENA_ALIGN - 1) &
		       ~(uintptr_t)(ARENA_ALIGN - 1);
		uintptr_t end = (uintptr_t)payload(c) + c->size;
		/* Written so that a huge `need` cannot wrap around. */
		if (base > end || need > end - base)
			c = NULL;
	}
	if (!c) {
		if (need > ARENA_CHUNK / 4) {
			/* Dedicated chunk, linked behind the head so the head keeps
			 * serving small requests. */
			chunk *big = new_chunk(a, need);
			if (!big)
				return NULL;
			if (a->head) {
				big->next = a->head->next;
				a->head->next = big;
			} else {
				big->next = NULL;
				a->head = big;
			}
			base = ((uintptr_t)payload(big) + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1);
			big->used = big->size;
			memset((void *)base, 0, need);
			a->total += need;
			return (void *)base;
		}
		c = new_chunk(a, ARENA_CHUNK);
		if (!c)
			return NULL;
		c->next = a->head;
		a->head = c;
		base = ((uintptr_t)payload(c) + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1);
	}
	c->used = base + need - (uintptr_t)payload(c);
	memset((void *)base, 0, need);
	a->total += need;
	return (void *)base;
}

char *kiln_arena_strndup(kiln_arena *a, const char *s, size_t n)
{
	char *p = kiln_arena_alloc(a, n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = 0;
	}
	return p;
}

char *kiln_arena_strdup(kiln_arena *a, const char *s)
{
	return kiln_arena_strndup(a, s, strlen(s));
}

void *kiln_arena_memdup(kiln_arena *a, const void *p, size_t size)
{
	void *q = kiln_arena_alloc(a, size);
	if (q && size)
		memcpy(q, p, size);
	return q;
}

size_t kiln_arena_used(const kiln_arena *a) { return a->total; }
