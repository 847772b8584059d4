/* test_plan.c — the arena planner (passes/plan_memory.c): live buffers never
 * overlap, dead ones are reused, offsets are aligned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "passes.h"

static void check_valid(const kiln_buffer *b, int n, int64_t total, int64_t align)
{
	for (int i = 0; i < n; i++) {
		assert_true(b[i].offset % align == 0);
		assert_true(b[i].offset + b[i].bytes <= total);
		for (int j = i + 1; j < n; j++) {
			bool live_together = b[i].first <= b[j].last && b[j].first <= b[i].last;
			bool apart = b[i].offset + b[i].bytes <= b[j].offset ||
			             b[j].offset + b[j].bytes <= b[i].offset;
			if (live_together && b[i].bytes && b[j].bytes)
				assert_true(apart);
		}
	}
}

static void test_empty(void **state)
{
	assert_int_equal(kiln_plan_buffers(NULL, 0, 64), 0);
}

/* A chain x0 -> x1 -> x2 -> x3: each buffer lives from its step to the next,
 * so two slots suffice. */
static void test_chain_reuses(void **state)
{
	kiln_buffer b[4];
	for (int i = 0; i < 4; i++)
		b[i] = (kiln_buffer){.bytes = 1000, .first = i, .last = i + 1};
	int64_t total = kiln_plan_buffers(b, 4, 64);
	check_valid(b, 4, total, 64);
	assert_int_equal(total, 2 * 1024);
	assert_int_equal(b[0].offset, b[2].offset);
	assert_int_equal(b[1].offset, b[3].offset);
}

/* All alive at once: sizes add up (rounded to the alignment). */
static void test_all_live(void **state)
{
	kiln_buffer b[3] = {{.bytes = 10, .first = 0, .last = 5},
	                    {.bytes = 100, .first = 1, .last = 4},
	                    {.bytes = 64, .first = 2, .last = 3}};
	int64_t total = kiln_plan_buffers(b, 3, 64);
	check_valid(b, 3, total, 64);
	assert_int_equal(total, 64 + 128 + 64);
	assert_int_equal(b[1].offset, 0); /* the largest goes first */
}

/* A small buffer fits in the gap a dead large one leaves. */
static void test_gap_fill(void **state)
{
	kiln_buffer b[3] = {{.bytes = 4096, .first = 0, .last = 1},
	                    {.bytes = 4096, .first = 1, .last = 3},
	                    {.bytes = 1024, .first = 2, .last = 3}};
	int64_t total = kiln_plan_buffers(b, 3, 64);
	check_valid(b, 3, total, 64);
	assert_int_equal(total, 8192);
	assert_int_equal(b[2].offset, b[0].offset);
}

/* Random lifetimes: always valid, never below the peak of live bytes, and
 * well below the sum of all buffers. */
static void test_random(void **state)
{
	uint64_t s = 42;
	for (int trial = 0; trial < 300; trial++) {
		int n = 1 + (int)(s % 60);
		kiln_buffer b[64];
		int64_t sum = 0;
		for (int i = 0; i < n; i++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			int first = (int)((s >> 33) % 40);
			int len = (int)((s >> 20) % 6);
			int64_t bytes = (int64_t)((s >> 40) % 5000);
			b[i] = (kiln_buffer){.bytes = bytes, .first = first, .last = first + len};
			sum += (bytes + 63) / 64 * 64;
		}
		int64_t total = kiln_plan_buffers(b, n, 64);
		check_valid(b, n, total, 64);
		int64_t peak = 0;
		for (int step = 0; step < 50; step++) {
			int64_t live = 0;
			for (int i = 0; i < n; i++)
				if (b[i].first <= step && step <= b[i].last)
					live += (b[i].bytes + 63) / 64 * 64;
			peak = live > peak ? live : peak;
		}
		assert_true(total >= peak);
		assert_true(total <= sum);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_chain_reuses),
		cmocka_unit_test(test_all_live),
		cmocka_unit_test(test_gap_fill),
		cmocka_unit_test(test_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
