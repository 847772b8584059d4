/* test_kk_attention.c — the Attention op's lowering and kk_attention_f32
 * against the interpreter (k_attention.c), through kharness.
 *
 * Each case is one Attention node over random Q, K, V (and mask) at 1 and 3
 * threads: odd Sq, Skv, D and Dv (1, 3, 17, 65, 130: tails of the register
 * tiles and of the vectors), batch and heads, every mask broadcast the
 * kernel sees (none, [B,1,1,S], [B,1,Sq,S], [1,1,1,1], a column), default
 * and explicit scales, masked-out columns (-inf) and an all -inf row (NaN,
 * as Softmax gives). f32 against the interpreter's double: rtol 1e-4 with
 * atol 1e-5. Then the shape rule's and the lowering's errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "interp.h"
#include "kharness.h"

typedef struct att_case {
	int64_t b, h, sq, skv, d, dv;
	int mask_rank;        /* 0: no mask */
	int64_t mask_dims[4];
	float scale;          /* 0: the default 1/sqrt(D) */
} att_case;

static kiln_node *att_node(kiln_graph *g, const att_case *c)
{
	kiln_value *in[4] = {
		kh_input(g, KILN_DT_F32, SHAPE(c->b, c->h, c->sq, c->d)),
		kh_input(g, KILN_DT_F32, SHAPE(c->b, c->h, c->skv, c->d)),
		kh_input(g, KILN_DT_F32, SHAPE(c->b, c->h, c->skv, c->dv)),
		c->mask_rank ? kh_input(g, KILN_DT_F32, c->mask_rank, c->mask_dims) : NULL,
	};
	kiln_node *n = kh_add(g, KILN_OP_ATTENTION, in, c->mask_rank ? 4 : 3, 1);
	if (c->scale != 0.0f)
		assert_int_equal(kiln_node_set_float(g, n, "scale", c->scale), KILN_OK);
	return n;
}

static void att_check(const att_case *c)
{
	kiln_graph *g = kh_graph();
	att_node(g, c);
	char what[160];
	snprintf(what, sizeof what, "Attention B%lld H%lld Sq%lld Skv%lld D%lld Dv%lld mask rank %d",
	         (long long)c->b, (long long)c->h, (long long)c->sq, (long long)c->skv,
	         (long long)c->d, (long long)c->dv, c->mask_rank);
	kh_opts o = kh_defaults();
	o.rtol = 1e-4;
	o.atol = 1e-5;
	kh_check_threads(g, what, o);
}

static void test_sizes(void **state)
{
	(void)state;
	static const int64_t sizes[] = {1, 3, 17, 65, 130};
	for (int i = 0; i < 5; i++)
		for (int j = 0; j < 5; j++) {
			int64_t sq = sizes[i], skv = sizes[j];
			att_check(&(att_case){1, 2, sq, skv, sizes[(i + j) % 5], sizes[(i + 2 * j + 1) % 5], 0, {0}, 0});
		}
	/* D and Dv on their own, including whole tiles (32, 64: V is read in
	 * place at KK_VL 16 and 4) next to tails */
	static const int64_t dims[] = {1, 3, 17, 32, 64, 65, 130};
	for (int i = 0; i < 7; i++)
		att_check(&(att_case){2, 3, 9, 21, dims[i], dims[6 - i], 0, {0}, 0});
}

static void test_masks(void **state)
{
	(void)state;
	static const int64_t sq[] = {1, 17, 65}, skv[] = {3, 17, 130};
	for (int i = 0; i < 3; i++) {
		int64_t q = sq[i], s = skv[i];
		/* [B,1,1,S]: BERT's padding mask */
		att_check(&(att_case){2, 3, q, s, 16, 16, 4, {2, 1, 1, s}, 0});
		/* [B,1,Sq,S] */
		att_check(&(att_case){2, 3, q, s, 17, 5, 4, {2, 1, q, s}, 0});
		/* [1,1,1,1] */
		att_check(&(att_case){2, 3, q, s, 8, 9, 4, {1, 1, 1, 1}, 0.3f});
		/* [B,H,Sq,S], the whole score shape */
		att_check(&(att_case){2, 3, q, s, 3, 3, 4, {2, 3, q, s}, 0});
		/* rank 2 [Sq,S], and a column [Sq,1] that repeats along S */
		att_check(&(att_case){1, 2, q, s, 5, 7, 2, {q, s}, 0});
		att_check(&(att_case){1, 2, q, s, 5, 7, 2, {q, 1}, 0});
		/* [H,1,S] */
		att_check(&(att_case){2, 3, q, s, 4, 4, 3, {3, 1, s}, 2.0f});
	}
}

/* A mask of -inf over some columns (masked out: those V rows must not
 * count) and over the whole of one query row (NaN in both). */
static void test_infinite_mask(void **state)
{
	(void)state;
	for (int all = 0; all < 2; all++) {
		kiln_graph *g = kh_graph();
		int64_t sq = 5, skv = 19;
		kiln_value *in[4] = {
			kh_input(g, KILN_DT_F32, SHAPE(1, 2, sq, 8)),
			kh_input(g, KILN_DT_F32, SHAPE(1, 2, skv, 8)),
			kh_input(g, KILN_DT_F32, SHAPE(1, 2, skv, 6)),
			NULL,
		};
		kiln_type mt = kh_type(KILN_DT_F32, 4, DIMS(1, 1, sq, skv));
		float m[5 * 19];
		for (int64_t i = 0; i < sq; i++)
			for (int64_t j = 0; j < skv; j++)
				m[i * skv + j] = (all && i == 2) || j % 3 == 1 ? -INFINITY : 0.25f * (float)i;
		in[3] = kiln_graph_add_const(g, "mask", &mt, m);
		assert_non_null(in[3]);
		kh_add(g, KILN_OP_ATTENTION, in, 4, 1);
		kh_opts o = kh_defaults();
		o.rtol = 1e-4;
		o.atol = 1e-5;
		kh_check_threads(g, all ? "Attention, one row all -inf" : "Attention, -inf columns", o);
	}
}

/* Omitted trailing inputs (as an ONNX Attention may list them): Y comes
 * after all of the node's inputs, with and without the mask. */
static void test_omitted_inputs(void **state)
{
	(void)state;
	for (int mask = 0; mask < 2; mask++) {
		kiln_graph *g = kh_graph();
		kiln_value *in[6] = {
			kh_input(g, KILN_DT_F32, SHAPE(1, 2, 5, 8)),
			kh_input(g, KILN_DT_F32, SHAPE(1, 2, 9, 8)),
			kh_input(g, KILN_DT_F32, SHAPE(1, 2, 9, 3)),
			mask ? kh_input(g, KILN_DT_F32, SHAPE(1, 1, 5, 9)) : NULL,
			NULL,
			NULL,
		};
		kh_add(g, KILN_OP_ATTENTION, in, 6, 1);
		kh_opts o = kh_defaults();
		o.rtol = 1e-4;
		o.atol = 1e-5;
		kh_check_threads(g, mask ? "Attention, 6 inputs, mask" : "Attention, 6 inputs", o);
	}
}

/* The interpreter's answer on a case small enough to work by hand: with
 * K all zero the softmax is uniform, so Y is the mean of V's rows; a mask
 * of -inf on the first column drops V's first row. */
static void test_interpreter_by_hand(void **state)
{
	(void)state;
	kiln_graph *g = kh_graph();
	kiln_type qt = kh_type(KILN_DT_F32, 4, DIMS(1, 1, 1, 2));
	kiln_type kt = kh_type(KILN_DT_F32, 4, DIMS(1, 1, 3, 2));
	kiln_type vt = kh_type(KILN_DT_F32, 4, DIMS(1, 1, 3, 1));
	kiln_type mt = kh_type(KILN_DT_F32, 1, DIMS(3));
	kiln_value *in[4] = {
		kiln_graph_add_const(g, "q", &qt, (float[]){1, 2}),
		kiln_graph_add_const(g, "k", &kt, NULL),
		kiln_graph_add_const(g, "v", &vt, (float[]){3, 6, 12}),
		kiln_graph_add_const(g, "m", &mt, (float[]){-INFINITY, 0, 0}),
	};
	kiln_node *n = kh_add(g, KILN_OP_ATTENTION, in, 4, 1);
	kh_finish(g);
	float y = 0;
	void *out[1] = {&y};
	assert_int_equal(kiln_interp_eval_node(n, out, NULL), KILN_OK);
	assert_true(fabsf(y - 9.0f) < 1e-6f);
	kiln_graph_destroy(g);
}

static void quiet_sink(void *user, const char *msg)
{
	(void)user;
	(void)msg;
}

/* Shape inference of the case's node fails with exactly `msg` (after the
 * node's name); mask_dt replaces the mask's dtype, attr (non-NULL) is set
 * to 1. */
static void expect_shape_error(const att_case *c, kiln_dtype mask_dt, const char *attr,
                               kiln_status want, const char *msg)
{
	kiln_graph *g = kh_graph();
	kiln_node *n = att_node(g, c);
	if (c->mask_rank)
		n->inputs[3]->type.dtype = mask_dt;
	if (attr)
		assert_int_equal(kiln_node_set_int(g, n, attr, 1), KILN_OK);
	kiln_diag d;
	kiln_diag_init(&d, NULL);
	d.fn = quiet_sink;
	assert_int_equal(kiln_infer_node(n, &d), want);
	char full[1200];
	snprintf(full, sizeof full, "node '%s' (Attention): %s", n->name, msg);
	assert_string_equal(d.last, full);
	kiln_graph_destroy(g);
}

static void test_shape_errors(void **state)
{
	(void)state;
	expect_shape_error(&(att_case){1, 2, 3, 4, 5, 6, 4, {1, 1, 1, 4}, 0}, KILN_DT_BOOL, NULL,
	                   KILN_ERR_UNSUPPORTED, "input 3 has dtype bool; kiln's Attention takes f32");
	expect_shape_error(&(att_case){1, 2, 3, 4, 5, 6, 4, {1, 1, 3, 5}, 0}, KILN_DT_F32, NULL,
	                   KILN_ERR_SHAPE,
	                   "mask f32[1,1,3,5] does not broadcast to the scores f32[1,2,3,4]");
	expect_shape_error(&(att_case){1, 2, 3, 4, 5, 6, 0, {0}, 0}, KILN_DT_F32, "is_causal",
	                   KILN_ERR_UNSUPPORTED, "is_causal must be 0");
	/* grouped KV heads, a KV cache: unsupported, not malformed */
	kiln_graph *g = kh_graph();
	kiln_value *in[5] = {kh_input(g, KILN_DT_F32, SHAPE(1, 6, 3, 5)),
	                     kh_input(g, KILN_DT_F32, SHAPE(1, 2, 4, 5)),
	                     kh_input(g, KILN_DT_F32, SHAPE(1, 2, 4, 6)), NULL,
	                     kh_input(g, KILN_DT_F32, SHAPE(1, 2, 4, 5))};
	kiln_node *n = kh_add(g, KILN_OP_ATTENTION, in, 3, 1);
	kiln_diag d;
	kiln_diag_init(&d, NULL);
	d.fn = quiet_sink;
	assert_int_equal(kiln_infer_node(n, &d), KILN_ERR_UNSUPPORTED);
	assert_string_equal(d.last, "node 'node_0' (Attention): Q has 6 heads, K 2 and V 2; kiln's "
	                            "Attention takes equal counts");
	n = kh_add(g, KILN_OP_ATTENTION, (kiln_value *[]){in[1], in[1], in[2], NULL, in[4]}, 5, 1);
	assert_int_equal(kiln_infer_node(n, &d), KILN_ERR_UNSUPPORTED);
	assert_string_equal(d.last, "node 'node_1' (Attention): input 4 (past_key) is not supported");
	kiln_graph_destroy(g);
	/* K's head size differs from Q's */
	g = kh_graph();
	in[0] = kh_input(g, KILN_DT_F32, SHAPE(1, 2, 3, 5));
	in[1] = kh_input(g, KILN_DT_F32, SHAPE(1, 2, 4, 6));
	in[2] = kh_input(g, KILN_DT_F32, SHAPE(1, 2, 4, 6));
	n = kh_add(g, KILN_OP_ATTENTION, in, 3, 1);
	assert_int_equal(kiln_infer_node(n, &d), KILN_ERR_SHAPE);
	assert_non_null(strstr(d.last, "Q f32[1,2,3,5], K f32[1,2,4,6] and V f32[1,2,4,6] do not agree"));
	kiln_graph_destroy(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_masks),
		cmocka_unit_test(test_infinite_mask),
		cmocka_unit_test(test_omitted_inputs),
		cmocka_unit_test(test_interpreter_by_hand),
		cmocka_unit_test(test_shape_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
