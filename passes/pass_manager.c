/* pass_manager.c — kiln_optimize: runs graph passes by name, in the -O
 * pipelines or a list the user gives, with the verifier and printing hooks
 * the tests and `kiln opt` use. */
#include "passes.h"

#include <string.h>

typedef struct pass_info {
	const char *name, *desc;
	kiln_pass_fn fn;
} pass_info;

static const pass_info pass_table[] = {
#define KILN_PASS(ID, NAME, DESC) {NAME, DESC, kiln_pass_##ID},
#include "passes.def"
#undef KILN_PASS
};

#define N_PASSES ((int)(sizeof pass_table / sizeof *pass_table))

/* -O0 runs no pass (one kernel per op); -O1 folds and simplifies; -O2 and
 * -O3 also fuse. Cleanups first (fold-constants, simplify, cse), so the
 * fusions see the graph's canonical form; dce last. fuse-reduction is not
 * in them yet: its kernel measured slower than the separate loop and
 * softmax/layer-norm kernels on the BERT-style encoder (docs/passes.md);
 * with --passes it goes after fuse-output and before fuse-loop.
 * layout-nchwc goes before fuse-output, so that the blocked convolutions
 * anchor output fusions and fuse-loop fuses on the blocked tensors.
 * fuse-attention goes before fuse-output and fuse-loop, which would take
 * the score block's MatMul and its scale and mask Add apart. */
static const char *const pipelines[4] = {
	"",
	"fold-constants,simplify,cse,fold-batchnorm,dce",
	"fold-constants,simplify,cse,fuse-patterns,fuse-attention,fold-batchnorm,layout-nchwc,fuse-output,fuse-loop,dce",
	"fold-constants,simplify,cse,fuse-patterns,fuse-attention,fold-batchnorm,layout-nchwc,fuse-output,fuse-loop,dce",
};

const char *kiln_pass_name(int i) { return i >= 0 && i < N_PASSES ? pass_table[i].name : NULL; }
const char *kiln_pass_desc(int i) { return i >= 0 && i < N_PASSES ? pass_table[i].desc : NULL; }

const char *kiln_pipeline(int opt_level)
{
	return opt_level >= 0 && opt_level <= 3 ? pipelines[opt_level] : NULL;
}

static const pass_info *find_pass(const char *name, size_t len)
{
	for (int i = 0; i < N_PASSES; i++)
		if (strlen(pass_table[i].name) == len && strncmp(pass_table[i].name, name, len) == 0)
			return &pass_table[i];
	return NULL;
}

/* Next comma-separated item of *list (spaces around it skipped). */
static bool next_item(const char **list, const char **item, size_t *len)
{
	const char *s = *list;
	while (*s == ' ' || *s == ',')
		s++;
	if (!*s)
		return false;
	const char *e = s;
	while (*e && *e != ',')
		e++;
	*item = s;
	*len = (size_t)(e - s);
	while (*len && s[*len - 1] == ' ')
		(*len)--;
	*list = e;
	return true;
}

static bool in_list(const char *list, const char *name)
{
	const char *item;
	size_t len;
	while (list && next_item(&list, &item, &len))
		if (strlen(name) == len && strncmp(item, name, len) == 0)
			return true;
	return false;
}

/* Every name in list must be a pass ("all" too where allow_all). */
static kiln_status check_names(const char *list, const char *what, bool allow_all, kiln_diag *d)
{
	const char *item;
	size_t len;
	while (list && next_item(&list, &item, &len)) {
		if (allow_all && len == 3 && strncmp(item, "all", 3) == 0)
			continue;
		if (!find_pass(item, len))
			return kiln_diag_error(d, KILN_ERR_INVALID_ARG, NULL,
			                       "%s: unknown pass '%.*s' (kiln opt --list-passes lists them)",
			                       what, (int)len, item);
	}
	return KILN_OK;
}

kiln_status kiln_opt_check(const kiln_opt_opts *o, kiln_diag *d)
{
	const char *list = o->passes ? o->passes : kiln_pipeline(o->opt_level);
	if (!list)
		return kiln_diag_error(d, KILN_ERR_INVALID_ARG, NULL, "optimisation level -O%d (use 0..3)",
		                       o->opt_level);
	KILN_TRY(check_names(list, "--passes", false, d));
	KILN_TRY(check_names(o->disable, "--disable-pass", false, d));
	return check_names(o->print_after, "--print-after", true, d);
}

kiln_status kiln_optimize(kiln_graph *g, const kiln_opt_opts *o, kiln_diag *d)
{
	kiln_opt_opts dflt = {.opt_level = 2};
	if (!o)
		o = &dflt;
	KILN_TRY(kiln_opt_check(o, d));
	const char *list = o->passes ? o->passes : kiln_pipeline(o->opt_level);
	const char *item;
	size_t len;
	while (next_item(&list, &item, &len)) {
		const pass_info *p = find_pass(item, len);
		if (in_list(o->disable, p->name))
			continue;
		bool changed = false;
		KILN_TRY(p->fn(g, &changed, d));
		if (o->verify_each) {
			kiln_status s = kiln_graph_verify(g, d);
			if (s != KILN_OK)
				return kiln_diag_error(d, s, NULL, "the graph does not verify after pass %s",
				                       p->name);
		}
		if (o->print && (in_list(o->print_after, p->name) || in_list(o->print_after, "all")))
			o->print(o->print_user, p->name, g);
	}
	return KILN_OK;
}

/* ---- helpers ---- */

kiln_node *kiln_pass_single_user(const kiln_graph *g, const kiln_value *v)
{
	kiln_node *user = NULL;
	for (int i = 0; i < g->n_outputs; i++)
		if (g->outputs[i] == v)
			return NULL;
	for (int i = 0; i < g->n_nodes; i++) {
		kiln_node *n = g->nodes[i];
		for (int j = 0; j < n->n_inputs; j++)
			if (n->inputs[j] == v) {
				if (user)
					return NULL;
				user = n;
			}
	}
	return user;
}

const float *kiln_pass_const_f32(const kiln_value *v)
{
	return v && v->kind == KILN_VALUE_CONST && v->data && !v->elided &&
	               v->type.dtype == KILN_DT_F32
	           ? v->data
	           : NULL;
}

const char *kiln_pass_join_origin(kiln_graph *g, const kiln_node *a, const kiln_node *b)
{
	const char *x = a->origin ? a->origin : a->name, *y = b->origin ? b->origin : b->name;
	size_t nx = strlen(x), ny = strlen(y);
	char *s = kiln_arena_alloc(g->arena, nx + ny + 2);
	if (!s)
		return a->origin;
	memcpy(s, x, nx);
	s[nx] = ',';
	memcpy(s + nx + 1, y, ny + 1);
	return s;
}
