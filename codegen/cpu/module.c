/* module.c — one LLVM module per model: the kernel library (bitcode linked
 * in), weights as read-only globals, one glue function per kernel, the entry
 * point that runs them in order over one arena, and the kiln_model
 * descriptor, the module's only exported symbol.
 *
 * Memory: every intermediate tensor and kernel scratch block gets an offset
 * in one arena from the liveness planner (passes/plan_memory.c); graph inputs
 * and outputs are the caller's buffers, written in place. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/BitReader.h>
#include <llvm-c/Linker.h>

#include "cpu.h"
#include "passes.h"

/* Embedded by kk_blobs.S: one linked bitcode module per kernel variant. */
extern const char kiln_kk_x86_64_v4[], kiln_kk_x86_64_v4_end[];
extern const char kiln_kk_x86_64_v8[], kiln_kk_x86_64_v8_end[];
extern const char kiln_kk_x86_64_v16[], kiln_kk_x86_64_v16_end[];
extern const char kiln_kk_aarch64_v4[], kiln_kk_aarch64_v4_end[];

bool kiln_cpu_kernel_bitcode(const kiln_cpu_target *t, const char **data, size_t *size)
{
	const char *b = NULL, *e = NULL;
	if (t->arch == KILN_CPU_ARCH_AARCH64) {
		b = kiln_kk_aarch64_v4, e = kiln_kk_aarch64_v4_end;
	} else if (t->vl == 16) {
		b = kiln_kk_x86_64_v16, e = kiln_kk_x86_64_v16_end;
	} else if (t->vl == 8) {
		b = kiln_kk_x86_64_v8, e = kiln_kk_x86_64_v8_end;
	} else if (t->vl == 4) {
		b = kiln_kk_x86_64_v4, e = kiln_kk_x86_64_v4_end;
	}
	if (!b)
		return false;
	*data = b;
	*size = (size_t)(e - b);
	return true;
}

/* One scheduled kernel: the node, its call, where its scratch lives. */
typedef struct kernel {
	const kiln_node *node;
	const char *fn;
	int64_t *ip;
	int n_ip;
	double *fp;
	int n_fp;
	int64_t scratch_bytes;
	int scratch_buf; /* index in the buffer list, -1 if none */
	const void **repl;
	int64_t *repl_bytes;
} kernel;

typedef struct builder {
	kiln_compiled *c;
	const kiln_graph *g;
	kiln_diag *d;
	LLVMContextRef ctx;
	LLVMModuleRef mod; /* the model: glue, weights, descriptor */
	LLVMModuleRef lib; /* the kernel library, linked into mod at the end */
	LLVMBuilderRef b;
	LLVMTypeRef ptr, i8, i32, i64, f64;
	kernel *kernels;
	int n_kernels;
	int *buf_of_value;   /* value id -> buffer index, -1 */
	int *output_of_value;/* value id -> first graph output index, -1 */
	int *input_of_value; /* value id -> graph input index, -1 */
	LLVMValueRef *weight;/* value id -> global, NULL until used */
	kiln_buffer *bufs;
	int n_bufs;
} builder;

static const char *sanitize(kiln_arena *a, const char *s, const char *prefix)
{
	size_t n = strlen(s), pn = strlen(prefix);
	char *out = kiln_arena_alloc(a, n + pn + 2);
	if (!out)
		return NULL;
	memcpy(out, prefix, pn);
	size_t j = pn;
	if (!pn && (n == 0 || (s[0] >= '0' && s[0] <= '9')))
		out[j++] = '_';
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		          (ch >= '0' && ch <= '9') || ch == '_';
		out[j++] = ok ? ch : '_';
	}
	out[j] = 0;
	return out;
}

/* ---- schedule and arena plan ---- */

/* In-place reuse: the buffer of an input the kernel may overwrite with its
 * output (its lowering says which: kiln_kcall.in_place), or -1. The input
 * must be an arena buffer that dies here with the output's shape and byte
 * size (not a broadcast operand). */
static int in_place_input(const builder *B, const kiln_node *n, const kiln_kcall *call,
                          const int *last_use, int ni)
{
	if (!call->in_place || n->n_outputs != 1)
		return -1;
	const kiln_type *yt = &n->outputs[0]->type;
	for (int j = 0; j < n->n_inputs && j < (int)(8 * sizeof call->in_place); j++) {
		const kiln_value *v = n->inputs[j];
		if (!(call->in_place >> j & 1u) || !v || call->repl[j] || B->buf_of_value[v->id] < 0 ||
		    last_use[v->id] != ni || kiln_type_bytes(&v->type) != kiln_type_bytes(yt) ||
		    v->type.rank != yt->rank)
			continue;
		bool same = true;
		for (int k = 0; k < yt->rank; k++)
			same &= v->type.dims[k] == yt->dims[k];
		if (same && B->bufs[B->buf_of_value[v->id]].bytes == (int64_t)kiln_type_bytes(yt))
			return B->buf_of_value[v->id];
	}
	return -1;
}

static kiln_status schedule(builder *B)
{
	const kiln_graph *g = B->g;
	kiln_compiled *c = B->c;
	kiln_diag *d = B->d;
	kiln_arena *a = c->arena;
	B->kernels = kiln_arena_alloc(a, sizeof(kernel) * (size_t)(g->n_nodes + 1));
	B->buf_of_value = kiln_arena_alloc(a, sizeof(int) * (size_t)(g->n_values + 1));
	B->output_of_value = kiln_arena_alloc(a, sizeof(int) * (size_t)(g->n_values + 1));
	B->input_of_value = kiln_arena_alloc(a, sizeof(int) * (size_t)(g->n_values + 1));
	B->weight = kiln_arena_alloc(a, sizeof(LLVMValueRef) * (size_t)(g->n_values + 1));
	B->bufs = kiln_arena_alloc(a, sizeof(kiln_buffer) * (size_t)(g->n_values + g->n_nodes + 1));
	kiln_kcall *call = kiln_arena_alloc(a, sizeof *call);
	if (!B->kernels || !B->buf_of_value || !B->output_of_value || !B->input_of_value ||
	    !B->weight || !B->bufs || !call)
		return kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory");
	for (int i = 0; i < g->n_values; i++) {
		B->buf_of_value[i] = B->output_of_value[i] = B->input_of_value[i] = -1;
		B->weight[i] = NULL;
	}
	for (int i = g->n_outputs - 1; i >= 0; i--)
		B->output_of_value[g->outputs[i]->id] = i;
	for (int i = 0; i < g->n_inputs; i++)
		B->input_of_value[g->inputs[i]->id] = i;

	/* the last kernel step reading each value (graph outputs: never dies) */
	int *last_use = kiln_arena_alloc(a, sizeof(int) * (size_t)(g->n_values + 1));
	if (!last_use)
		return kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory");
	for (int i = 0; i < g->n_values; i++)
		last_use[i] = -1;
	for (int ni = 0; ni < g->n_nodes; ni++)
		for (int i = 0; i < g->nodes[ni]->n_inputs; i++)
			if (g->nodes[ni]->inputs[i])
				last_use[g->nodes[ni]->inputs[i]->id] = ni;
	for (int i = 0; i < g->n_outputs; i++)
		last_use[g->outputs[i]->id] = INT_MAX;

	int64_t intermediate = 0;
	for (int ni = 0; ni < g->n_nodes; ni++) {
		const kiln_node *n = g->nodes[ni];
		if (c->progress)
			c->progress(c->progress_user, "lower", ni, g->n_nodes);
		/* A node whose outputs are all empty has nothing to compute; its
		 * kernel is not called (kernels may assume a non-empty output). */
		bool empty = true;
		for (int i = 0; i < n->n_outputs; i++)
			empty &= kiln_type_numel(&n->outputs[i]->type) == 0;
		if (empty && n->n_outputs > 0) {
			for (int i = 0; i < n->n_outputs; i++) {
				kiln_value *v = n->outputs[i];
				if (B->output_of_value[v->id] >= 0)
					continue;
				B->buf_of_value[v->id] = B->n_bufs;
				B->bufs[B->n_bufs++] = (kiln_buffer){.bytes = 0, .first = ni, .last = ni};
			}
			continue;
		}
		memset(call, 0, sizeof *call);
		call->arena = a;
		KILN_TRY(kiln_cpu_lower(n, &c->target, call, d));
		kernel *k = &B->kernels[B->n_kernels++];
		k->node = n;
		k->fn = kiln_arena_strdup(a, call->fn);
		k->n_ip = call->n_ip;
		k->n_fp = call->n_fp;
		k->ip = kiln_arena_memdup(a, call->ip, sizeof(int64_t) * (size_t)(call->n_ip + 1));
		k->fp = kiln_arena_memdup(a, call->fp, sizeof(double) * (size_t)(call->n_fp + 1));
		k->repl = kiln_arena_memdup(a, call->repl, sizeof(void *) * (size_t)(n->n_inputs + 1));
		k->repl_bytes = kiln_arena_memdup(a, call->repl_bytes,
		                                  sizeof(int64_t) * (size_t)(n->n_inputs + 1));
		if (!k->fn || !k->ip || !k->fp || !k->repl || !k->repl_bytes)
			return kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory");
		k->scratch_bytes = call->scratch_bytes;
		k->scratch_buf = -1;
		if (call->thread_scratch_bytes > c->stats.thread_scratch_bytes)
			c->stats.thread_scratch_bytes = call->thread_scratch_bytes;
		for (int i = 0; i < n->n_inputs; i++) {
			kiln_value *v = n->inputs[i];
			if (!v || call->repl[i])
				continue;
			if (v->kind == KILN_VALUE_CONST && !v->data)
				return kiln_diag_error(d, KILN_ERR_INVALID_MODEL, n,
				                       "constant '%s' has no data (elided in the text IR)",
				                       v->name);
			if (B->buf_of_value[v->id] >= 0 && B->bufs[B->buf_of_value[v->id]].last < ni)
				B->bufs[B->buf_of_value[v->id]].last = ni;
		}
		for (int i = 0; i < n->n_outputs; i++) {
			kiln_value *v = n->outputs[i];
			if (B->output_of_value[v->id] >= 0)
				continue;
			int64_t bytes = (int64_t)kiln_type_bytes(&v->type);
			intermediate += bytes;
			int reuse = in_place_input(B, n, call, last_use, ni);
			if (reuse >= 0) {
				B->buf_of_value[v->id] = reuse;
				continue;
			}
			B->buf_of_value[v->id] = B->n_bufs;
			B->bufs[B->n_bufs++] = (kiln_buffer){.bytes = bytes, .first = ni, .last = ni};
		}
		if (k->scratch_bytes > 0) {
			k->scratch_buf = B->n_bufs;
			B->bufs[B->n_bufs++] =
				(kiln_buffer){.bytes = k->scratch_bytes, .first = ni, .last = ni};
		}
	}
	int64_t arena = kiln_plan_buffers(B->bufs, B->n_bufs, KILN_ABI_ALIGN);
	if (arena < 0)
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, NULL, "arena size overflows");
	c->stats.arena_bytes = arena;
	c->stats.intermediate_bytes = intermediate;
	c->stats.n_kernels = B->n_kernels;
	return KILN_OK;
}

/* ---- LLVM helpers ---- */

static LLVMValueRef const_bytes(builder *B, const char *name, const void *data, int64_t bytes,
                                unsigned align)
{
	static const char zero = 0;
	if (bytes <= 0) {
		data = &zero;
		bytes = 1;
	}
	if (bytes > UINT_MAX)
		return NULL;
	LLVMValueRef init = LLVMConstStringInContext(B->ctx, data, (unsigned)bytes, 1);
	LLVMValueRef gv = LLVMAddGlobal(B->mod, LLVMTypeOf(init), name);
	LLVMSetInitializer(gv, init);
	LLVMSetGlobalConstant(gv, 1);
	LLVMSetLinkage(gv, LLVMPrivateLinkage);
	LLVMSetUnnamedAddress(gv, LLVMGlobalUnnamedAddr);
	LLVMSetAlignment(gv, align);
	return gv;
}

static LLVMValueRef const_string(builder *B, const char *s)
{
	return const_bytes(B, ".str", s, (int64_t)strlen(s) + 1, 1);
}

static LLVMValueRef weight_of(builder *B, const kiln_value *v)
{
	if (!B->weight[v->id]) {
		char name[64];
		snprintf(name, sizeof name, "w.%d", v->id);
		B->weight[v->id] = const_bytes(B, name, v->data, (int64_t)kiln_type_bytes(&v->type),
		                               KILN_ABI_ALIGN);
		if (B->weight[v->id])
			B->c->stats.weight_bytes += (int64_t)kiln_type_bytes(&v->type);
	}
	return B->weight[v->id];
}

static LLVMValueRef load_slot(builder *B, LLVMValueRef array, int index)
{
	LLVMValueRef idx = LLVMConstInt(B->i64, (unsigned long long)index, 0);
	LLVMValueRef p = LLVMBuildGEP2(B->b, B->ptr, array, &idx, 1, "");
	return LLVMBuildLoad2(B->b, B->ptr, p, "");
}

static LLVMValueRef arena_at(builder *B, LLVMValueRef arena, int64_t offset)
{
	LLVMValueRef off = LLVMConstInt(B->i64, (unsigned long long)offset, 0);
	return LLVMBuildGEP2(B->b, B->i8, arena, &off, 1, "");
}

/* The pointer to a value's data inside a glue function. */
static LLVMValueRef value_ptr(builder *B, const kiln_value *v, LLVMValueRef arena,
                              LLVMValueRef inputs, LLVMValueRef outputs)
{
	if (v->kind == KILN_VALUE_CONST)
		return weight_of(B, v);
	if (B->input_of_value[v->id] >= 0)
		return load_slot(B, inputs, B->input_of_value[v->id]);
	if (B->output_of_value[v->id] >= 0)
		return load_slot(B, outputs, B->output_of_value[v->id]);
	return arena_at(B, arena, B->bufs[B->buf_of_value[v->id]].offset);
}

static void set_target_attrs(builder *B, LLVMValueRef fn)
{
	static const char *const drop[] = {"target-cpu", "target-features", "tune-cpu"};
	for (size_t i = 0; i < sizeof drop / sizeof *drop; i++)
		LLVMRemoveStringAttributeAtIndex(fn, LLVMAttributeFunctionIndex, drop[i],
		                                 (unsigned)strlen(drop[i]));
	LLVMAddTargetDependentFunctionAttr(fn, "target-cpu", B->c->target.cpu);
	if (B->c->target.features[0])
		LLVMAddTargetDependentFunctionAttr(fn, "target-features", B->c->target.features);
}

static void add_enum_attr(builder *B, LLVMValueRef fn, const char *name)
{
	unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
	LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
	                        LLVMCreateEnumAttribute(B->ctx, kind, 0));
}

/* ---- kernel library ---- */

static kiln_status load_library(builder *B)
{
	const char *data;
	size_t size;
	kiln_diag *d = B->d;
	if (!kiln_cpu_kernel_bitcode(&B->c->target, &data, &size))
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, NULL,
		                       "no kernel library for %s with %d-lane vectors",
		                       B->c->target.triple, B->c->target.vl);
	LLVMMemoryBufferRef mb = LLVMCreateMemoryBufferWithMemoryRange(data, size, "kernels", 0);
	LLVMModuleRef mod = NULL;
	bool bad = LLVMParseBitcodeInContext2(B->ctx, mb, &mod);
	LLVMDisposeMemoryBuffer(mb);
	if (bad || !mod)
		return kiln_diag_error(d, KILN_ERR_INTERNAL, NULL, "embedded kernel bitcode is corrupt");
	B->lib = mod;
	return KILN_OK;
}

/* Links the library into the model, then makes everything but the
 * descriptor internal (unused kernels are dropped by globaldce) and
 * retargets every function to the chosen CPU. */
static kiln_status link_library(builder *B)
{
	LLVMSetTarget(B->lib, B->c->target.triple);
	LLVMSetModuleDataLayout(B->lib, LLVMGetModuleDataLayout(B->mod));
	LLVMModuleRef lib = B->lib;
	B->lib = NULL; /* consumed by the linker, even when it fails */
	if (LLVMLinkModules2(B->mod, lib))
		return kiln_diag_error(B->d, KILN_ERR_INTERNAL, NULL, "linking the kernel library failed");
	for (LLVMValueRef f = LLVMGetFirstFunction(B->mod); f; f = LLVMGetNextFunction(f)) {
		if (LLVMIsDeclaration(f))
			continue;
		LLVMSetLinkage(f, LLVMInternalLinkage);
		set_target_attrs(B, f);
	}
	for (LLVMValueRef gv = LLVMGetFirstGlobal(B->mod); gv; gv = LLVMGetNextGlobal(gv)) {
		size_t len;
		const char *name = LLVMGetValueName2(gv, &len);
		if (!LLVMIsDeclaration(gv) && strcmp(name, KILN_ABI_SYMBOL))
			LLVMSetLinkage(gv, LLVMInternalLinkage);
	}
	return KILN_OK;
}

/* ---- glue ---- */

static LLVMTypeRef glue_type(builder *B)
{
	LLVMTypeRef params[4] = {B->ptr, B->ptr, B->ptr, B->ptr};
	return LLVMFunctionType(LLVMVoidTypeInContext(B->ctx), params, 4, 0);
}

/* void k<i>.<node>(host, arena, inputs, outputs): gathers the node's tensor
 * pointers and calls the library kernel with its constant parameters. */
static kiln_status emit_glue(builder *B, int ki, LLVMValueRef *out)
{
	kernel *k = &B->kernels[ki];
	const kiln_node *n = k->node;
	kiln_arena *a = B->c->arena;
	LLVMValueRef def = LLVMGetNamedFunction(B->lib, k->fn);
	if (!def || LLVMIsDeclaration(def))
		return kiln_diag_error(B->d, KILN_ERR_INTERNAL, n,
		                       "kernel '%s' is not in the kernel library", k->fn);
	LLVMValueRef kfn = LLVMGetNamedFunction(B->mod, k->fn);
	if (!kfn)
		kfn = LLVMAddFunction(B->mod, k->fn, LLVMGlobalGetValueType(def));
	char name[160];
	snprintf(name, sizeof name, "k%d.%s", ki, sanitize(a, n->name, ""));
	LLVMValueRef fn = LLVMAddFunction(B->mod, name, glue_type(B));
	LLVMSetLinkage(fn, LLVMInternalLinkage);
	set_target_attrs(B, fn);
	add_enum_attr(B, fn, "noinline");
	add_enum_attr(B, fn, "nounwind");
	LLVMValueRef host = LLVMGetParam(fn, 0), arena = LLVMGetParam(fn, 1);
	LLVMValueRef inputs = LLVMGetParam(fn, 2), outputs = LLVMGetParam(fn, 3);
	LLVMPositionBuilderAtEnd(B->b, LLVMAppendBasicBlockInContext(B->ctx, fn, "entry"));

	int nt = n->n_inputs + n->n_outputs + (k->scratch_buf >= 0);
	LLVMTypeRef tarr_t = LLVMArrayType2(B->ptr, (uint64_t)(nt ? nt : 1));
	LLVMValueRef tarr = LLVMBuildAlloca(B->b, tarr_t, "t");
	int slot = 0;
	for (int i = 0; i < n->n_inputs + n->n_outputs; i++, slot++) {
		LLVMValueRef p;
		if (i < n->n_inputs && k->repl[i]) {
			char rname[64];
			snprintf(rname, sizeof rname, "k%d.in%d", ki, i);
			p = const_bytes(B, rname, k->repl[i], k->repl_bytes[i], KILN_ABI_ALIGN);
			B->c->stats.weight_bytes += k->repl_bytes[i];
		} else {
			const kiln_value *v = i < n->n_inputs ? n->inputs[i] : n->outputs[i - n->n_inputs];
			p = v ? value_ptr(B, v, arena, inputs, outputs) : LLVMConstPointerNull(B->ptr);
		}
		if (!p)
			return kiln_diag_error(B->d, KILN_ERR_UNSUPPORTED, n, "a constant exceeds 4 GiB");
		LLVMValueRef idx[2] = {LLVMConstInt(B->i64, 0, 0), LLVMConstInt(B->i64, (unsigned)slot, 0)};
		LLVMBuildStore(B->b, p, LLVMBuildGEP2(B->b, tarr_t, tarr, idx, 2, ""));
	}
	if (k->scratch_buf >= 0) {
		LLVMValueRef idx[2] = {LLVMConstInt(B->i64, 0, 0), LLVMConstInt(B->i64, (unsigned)slot, 0)};
		LLVMBuildStore(B->b, arena_at(B, arena, B->bufs[k->scratch_buf].offset),
		               LLVMBuildGEP2(B->b, tarr_t, tarr, idx, 2, ""));
	}

	LLVMValueRef ip = LLVMConstPointerNull(B->ptr), fp = LLVMConstPointerNull(B->ptr);
	if (k->n_ip) {
		LLVMValueRef *vals = kiln_arena_alloc(a, sizeof *vals * (size_t)k->n_ip);
		if (!vals)
			return kiln_diag_error(B->d, KILN_ERR_OOM, n, "out of memory");
		for (int i = 0; i < k->n_ip; i++)
			vals[i] = LLVMConstInt(B->i64, (unsigned long long)k->ip[i], 1);
		LLVMValueRef init = LLVMConstArray2(B->i64, vals, (uint64_t)k->n_ip);
		ip = LLVMAddGlobal(B->mod, LLVMTypeOf(init), "ip");
		LLVMSetInitializer(ip, init);
		LLVMSetGlobalConstant(ip, 1);
		LLVMSetLinkage(ip, LLVMPrivateLinkage);
		LLVMSetAlignment(ip, 8);
	}
	if (k->n_fp) {
		LLVMValueRef *vals = kiln_arena_alloc(a, sizeof *vals * (size_t)k->n_fp);
		if (!vals)
			return kiln_diag_error(B->d, KILN_ERR_OOM, n, "out of memory");
		for (int i = 0; i < k->n_fp; i++)
			vals[i] = LLVMConstReal(B->f64, k->fp[i]);
		LLVMValueRef init = LLVMConstArray2(B->f64, vals, (uint64_t)k->n_fp);
		fp = LLVMAddGlobal(B->mod, LLVMTypeOf(init), "fp");
		LLVMSetInitializer(fp, init);
		LLVMSetGlobalConstant(fp, 1);
		LLVMSetLinkage(fp, LLVMPrivateLinkage);
		LLVMSetAlignment(fp, 8);
	}
	LLVMValueRef args[4] = {ip, fp, tarr, host};
	LLVMBuildCall2(B->b, LLVMGlobalGetValueType(kfn), kfn, args, 4, "");
	LLVMBuildRetVoid(B->b);
	*out = fn;
	return KILN_OK;
}

/* void kiln_hook(host, k): calls host->kernel_hook(host->hook_user, k)
 * when the runner set one (kiln_abi_host fields 4 and 5). */
static LLVMValueRef emit_hook(builder *B)
{
	LLVMTypeRef fields[6] = {B->i32, B->i32, B->ptr, B->ptr, B->ptr, B->ptr};
	LLVMTypeRef host_t = LLVMStructTypeInContext(B->ctx, fields, 6, 0);
	LLVMTypeRef params[2] = {B->ptr, B->i32};
	LLVMTypeRef fn_t = LLVMFunctionType(LLVMVoidTypeInContext(B->ctx), params, 2, 0);
	LLVMValueRef fn = LLVMAddFunction(B->mod, "kiln_hook", fn_t);
	LLVMSetLinkage(fn, LLVMInternalLinkage);
	set_target_attrs(B, fn);
	add_enum_attr(B, fn, "nounwind");
	LLVMBasicBlockRef saved = LLVMGetInsertBlock(B->b);
	LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(B->ctx, fn, "entry");
	LLVMBasicBlockRef call = LLVMAppendBasicBlockInContext(B->ctx, fn, "call");
	LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(B->ctx, fn, "done");
	LLVMValueRef host = LLVMGetParam(fn, 0);
	LLVMPositionBuilderAtEnd(B->b, entry);
	LLVMValueRef f = LLVMBuildLoad2(B->b, B->ptr, LLVMBuildStructGEP2(B->b, host_t, host, 4, ""), "");
	LLVMBuildCondBr(B->b, LLVMBuildIsNull(B->b, f, ""), done, call);
	LLVMPositionBuilderAtEnd(B->b, call);
	LLVMValueRef user = LLVMBuildLoad2(B->b, B->ptr, LLVMBuildStructGEP2(B->b, host_t, host, 5, ""), "");
	LLVMValueRef args[2] = {user, LLVMGetParam(fn, 1)};
	LLVMBuildCall2(B->b, fn_t, f, args, 2, "");
	LLVMBuildBr(B->b, done);
	LLVMPositionBuilderAtEnd(B->b, done);
	LLVMBuildRetVoid(B->b);
	LLVMPositionBuilderAtEnd(B->b, saved);
	return fn;
}

/* i32 entry(host, arena, inputs, outputs): the kernels in order, then the
 * outputs no kernel writes (constants, inputs, repeated outputs). */
static kiln_status emit_entry(builder *B, LLVMValueRef *out)
{
	const kiln_graph *g = B->g;
	LLVMValueRef *glue = kiln_arena_alloc(B->c->arena, sizeof *glue * (size_t)(B->n_kernels + 1));
	if (!glue)
		return kiln_diag_error(B->d, KILN_ERR_OOM, NULL, "out of memory");
	for (int i = 0; i < B->n_kernels; i++)
		KILN_TRY(emit_glue(B, i, &glue[i]));

	LLVMTypeRef params[4] = {B->ptr, B->ptr, B->ptr, B->ptr};
	LLVMValueRef fn = LLVMAddFunction(B->mod, "kiln_entry", LLVMFunctionType(B->i32, params, 4, 0));
	LLVMSetLinkage(fn, LLVMInternalLinkage);
	set_target_attrs(B, fn);
	add_enum_attr(B, fn, "nounwind");
	LLVMValueRef p[4];
	for (int i = 0; i < 4; i++)
		p[i] = LLVMGetParam(fn, (unsigned)i);
	LLVMPositionBuilderAtEnd(B->b, LLVMAppendBasicBlockInContext(B->ctx, fn, "entry"));
	LLVMValueRef hook = emit_hook(B);
	LLVMTypeRef hook_params[2] = {B->ptr, B->i32};
	LLVMTypeRef hook_t = LLVMFunctionType(LLVMVoidTypeInContext(B->ctx), hook_params, 2, 0);
	for (int i = 0; i <= B->n_kernels; i++) {
		LLVMValueRef hp[2] = {p[0], LLVMConstInt(B->i32, (unsigned)i, 0)};
		LLVMBuildCall2(B->b, hook_t, hook, hp, 2, "");
		if (i < B->n_kernels)
			LLVMBuildCall2(B->b, glue_type(B), glue[i], p, 4, "");
	}
	for (int i = 0; i < g->n_outputs; i++) {
		const kiln_value *v = g->outputs[i];
		bool written = v->kind == KILN_VALUE_NODE && B->output_of_value[v->id] == i;
		if (written)
			continue;
		LLVMValueRef src;
		if (v->kind == KILN_VALUE_NODE)
			src = load_slot(B, p[3], B->output_of_value[v->id]);
		else if (v->kind == KILN_VALUE_CONST)
			src = weight_of(B, v);
		else
			src = load_slot(B, p[2], B->input_of_value[v->id]);
		int64_t bytes = (int64_t)kiln_type_bytes(&v->type);
		if (bytes > 0)
			LLVMBuildMemCpy(B->b, load_slot(B, p[3], i), 1, src, 1,
			                LLVMConstInt(B->i64, (unsigned long long)bytes, 0));
	}
	LLVMBuildRet(B->b, LLVMConstInt(B->i32, 0, 0));
	*out = fn;
	return KILN_OK;
}

/* ---- descriptor ---- */

static LLVMValueRef io_array(builder *B, kiln_cpu_io *io, int n, const char *name)
{
	LLVMTypeRef fields[5] = {B->ptr, B->i32, B->i32, LLVMArrayType2(B->i64, KILN_ABI_MAX_RANK),
	                         B->i64};
	LLVMTypeRef tensor_t = LLVMStructTypeInContext(B->ctx, fields, 5, 0);
	LLVMValueRef *elems = kiln_arena_alloc(B->c->arena, sizeof *elems * (size_t)(n + 1));
	if (!elems)
		return NULL;
	for (int i = 0; i < n; i++) {
		LLVMValueRef dims[KILN_ABI_MAX_RANK];
		for (int j = 0; j < KILN_ABI_MAX_RANK; j++)
			dims[j] = LLVMConstInt(B->i64, j < io[i].type.rank ? (unsigned long long)io[i].type.dims[j] : 0, 0);
		LLVMValueRef f[5] = {
			const_string(B, io[i].name),
			LLVMConstInt(B->i32, (unsigned)io[i].type.dtype, 0),
			LLVMConstInt(B->i32, (unsigned)io[i].type.rank, 0),
			LLVMConstArray2(B->i64, dims, KILN_ABI_MAX_RANK),
			LLVMConstInt(B->i64, (unsigned long long)kiln_type_bytes(&io[i].type), 0),
		};
		elems[i] = LLVMConstNamedStruct(tensor_t, f, 5);
	}
	if (!n)
		return LLVMConstPointerNull(B->ptr);
	LLVMValueRef init = LLVMConstArray2(tensor_t, elems, (uint64_t)n);
	LLVMValueRef gv = LLVMAddGlobal(B->mod, LLVMTypeOf(init), name);
	LLVMSetInitializer(gv, init);
	LLVMSetGlobalConstant(gv, 1);
	LLVMSetLinkage(gv, LLVMPrivateLinkage);
	return gv;
}

/* "Conv", or "fusion:output(Conv+Add+Relu)" for a fusion node. */
static const char *kernel_op(builder *B, const kiln_node *n)
{
	char buf[256];
	kiln_node_op_text(n, buf, sizeof buf);
	return kiln_arena_strdup(B->c->arena, buf);
}

/* kiln_abi_kernel[n_kernels]: what each kernel runs, its bytes and FLOPs. */
static LLVMValueRef kernel_array(builder *B)
{
	LLVMTypeRef fields[4] = {B->ptr, B->ptr, B->i64, B->i64};
	LLVMTypeRef kernel_t = LLVMStructTypeInContext(B->ctx, fields, 4, 0);
	if (!B->n_kernels)
		return LLVMConstPointerNull(B->ptr);
	LLVMValueRef *elems = kiln_arena_alloc(B->c->arena, sizeof *elems * (size_t)B->n_kernels);
	if (!elems)
		return NULL;
	for (int i = 0; i < B->n_kernels; i++) {
		const kernel *k = &B->kernels[i];
		const kiln_node *n = k->node;
		int64_t bytes = 0;
		for (int j = 0; j < n->n_inputs; j++) {
			const kiln_value *v = n->inputs[j];
			bool seen = false;
			for (int q = 0; q < j && !seen; q++)
				seen = n->inputs[q] == v;
			if (v && !seen)
				bytes += k->repl[j] ? k->repl_bytes[j] : (int64_t)kiln_type_bytes(&v->type);
		}
		for (int j = 0; j < n->n_outputs; j++)
			bytes += (int64_t)kiln_type_bytes(&n->outputs[j]->type);
		const char *op = kernel_op(B, n);
		if (!op)
			return NULL;
		LLVMValueRef f[4] = {const_string(B, n->name), const_string(B, op),
		                     LLVMConstInt(B->i64, (unsigned long long)bytes, 0),
		                     LLVMConstInt(B->i64, (unsigned long long)kiln_node_flops(n), 0)};
		elems[i] = LLVMConstNamedStruct(kernel_t, f, 4);
	}
	LLVMValueRef init = LLVMConstArray2(kernel_t, elems, (uint64_t)B->n_kernels);
	LLVMValueRef gv = LLVMAddGlobal(B->mod, LLVMTypeOf(init), "kernels");
	LLVMSetInitializer(gv, init);
	LLVMSetGlobalConstant(gv, 1);
	LLVMSetLinkage(gv, LLVMPrivateLinkage);
	return gv;
}

static kiln_status emit_descriptor(builder *B, LLVMValueRef entry)
{
	kiln_compiled *c = B->c;
	LLVMTypeRef fields[] = {B->i32, B->i32, B->ptr, B->ptr, B->ptr, B->ptr, B->ptr,
	                        B->i32, B->i32, B->ptr, B->ptr, B->i64, B->i64, B->i32,
	                        B->i32, B->ptr, B->ptr};
	unsigned nf = sizeof fields / sizeof *fields;
	LLVMTypeRef model_t = LLVMStructTypeInContext(B->ctx, fields, nf, 0);
	LLVMValueRef f[] = {
		LLVMConstInt(B->i32, KILN_ABI_MAGIC, 0),
		LLVMConstInt(B->i32, KILN_ABI_VERSION, 0),
		const_string(B, c->graph_name),
		const_string(B, KILN_VERSION),
		const_string(B, c->target.triple),
		const_string(B, c->target.cpu),
		const_string(B, c->target.isa),
		LLVMConstInt(B->i32, (unsigned)c->n_inputs, 0),
		LLVMConstInt(B->i32, (unsigned)c->n_outputs, 0),
		io_array(B, c->inputs, c->n_inputs, "inputs"),
		io_array(B, c->outputs, c->n_outputs, "outputs"),
		LLVMConstInt(B->i64, (unsigned long long)c->stats.arena_bytes, 0),
		LLVMConstInt(B->i64, (unsigned long long)c->stats.thread_scratch_bytes, 0),
		LLVMConstInt(B->i32, (unsigned)c->stats.n_kernels, 0),
		LLVMConstInt(B->i32, c->target.host_gemm ? KILN_ABI_FLAG_HOST_SGEMM : 0, 0),
		entry,
		kernel_array(B),
	};
	for (unsigned i = 0; i < nf; i++)
		if (!f[i])
			return kiln_diag_error(B->d, KILN_ERR_OOM, NULL, "out of memory");
	LLVMValueRef gv = LLVMAddGlobal(B->mod, model_t, KILN_ABI_SYMBOL);
	LLVMSetInitializer(gv, LLVMConstNamedStruct(model_t, f, nf));
	LLVMSetGlobalConstant(gv, 1);
	LLVMSetLinkage(gv, LLVMExternalLinkage);
	LLVMSetVisibility(gv, LLVMDefaultVisibility);
	LLVMSetAlignment(gv, 16);
	return KILN_OK;
}

static kiln_cpu_io *io_at(kiln_compiled *c, int k)
{
	return k < c->n_inputs ? &c->inputs[k] : &c->outputs[k - c->n_inputs];
}

static kiln_status describe_io(kiln_compiled *c, const kiln_graph *g, kiln_diag *d)
{
	kiln_arena *a = c->arena;
	c->n_inputs = g->n_inputs;
	c->n_outputs = g->n_outputs;
	c->inputs = kiln_arena_alloc(a, sizeof(kiln_cpu_io) * (size_t)(g->n_inputs + 1));
	c->outputs = kiln_arena_alloc(a, sizeof(kiln_cpu_io) * (size_t)(g->n_outputs + 1));
	if (!c->inputs || !c->outputs)
		return kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory");
	/* Inputs then outputs, one list: identifiers are unique across both
	 * ("a.b" and "a_b" sanitise alike, and an input may also be an output),
	 * so a later clash gets "_<k>" appended until it is unique. */
	for (int k = 0; k < g->n_inputs + g->n_outputs; k++) {
		const kiln_value *v = k < g->n_inputs ? g->inputs[k] : g->outputs[k - g->n_inputs];
		kiln_cpu_io *io = io_at(c, k);
		io->name = kiln_arena_strdup(a, v->name);
		io->type = v->type;
		const char *id = sanitize(a, v->name, "");
		for (int j = 0; id && j < k; j++) {
			if (strcmp(io_at(c, j)->ident, id))
				continue;
			size_t len = strlen(id) + 16;
			char *s2 = kiln_arena_alloc(a, len);
			if (s2)
				snprintf(s2, len, "%s_%d", id, k < g->n_inputs ? k : k - g->n_inputs);
			id = s2;
			j = -1;
		}
		if (!id || !io->name)
			return kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory");
		io->ident = id;
	}
	return KILN_OK;
}

kiln_status kiln_cpu_build_module(kiln_compiled *c, const kiln_graph *g,
                                  const kiln_compile_opts *o, kiln_diag *d)
{
	builder B = {.c = c, .g = g, .d = d, .ctx = c->ctx};
	B.ptr = LLVMPointerTypeInContext(c->ctx, 0);
	B.i8 = LLVMInt8TypeInContext(c->ctx);
	B.i32 = LLVMInt32TypeInContext(c->ctx);
	B.i64 = LLVMInt64TypeInContext(c->ctx);
	B.f64 = LLVMDoubleTypeInContext(c->ctx);

	for (int i = 0; i < g->n_values; i++)
		if (g->values[i]->type.rank < 0 || g->values[i]->type.rank > KILN_ABI_MAX_RANK)
			return kiln_diag_error(d, KILN_ERR_INTERNAL, NULL, "value '%s' has bad rank",
			                       g->values[i]->name);
	KILN_TRY(describe_io(c, g, d));
	KILN_TRY(schedule(&B));
	KILN_TRY(load_library(&B));
	B.mod = c->mod = LLVMModuleCreateWithNameInContext(c->graph_name, c->ctx);
	LLVMSetTarget(B.mod, c->target.triple);
	LLVMTargetDataRef layout = LLVMCreateTargetDataLayout(c->tm);
	LLVMSetModuleDataLayout(B.mod, layout);
	LLVMDisposeTargetData(layout);

	B.b = LLVMCreateBuilderInContext(c->ctx);
	LLVMValueRef entry = NULL;
	kiln_status st = emit_entry(&B, &entry);
	if (!st)
		st = emit_descriptor(&B, entry);
	LLVMDisposeBuilder(B.b);
	char *msg = NULL;
	if (!st && LLVMVerifyModule(B.mod, LLVMReturnStatusAction, &msg))
		st = kiln_diag_error(d, KILN_ERR_INTERNAL, NULL, "invalid LLVM module: %.300s",
		                     msg ? msg : "");
	LLVMDisposeMessage(msg);
	/* The glue is optimised on its own: the kernels arrive optimised by
	 * clang for their vector width, and running the pipeline over them again
	 * costs compile time for nothing (-O3 does, over the linked module). */
	if (!st && c->opt_level >= 1 && c->opt_level <= 2)
		st = kiln_cpu_run_passes(c, B.mod, c->opt_level == 1 ? "default<O1>" : "default<O2>", d);
	if (!st)
		st = link_library(&B);
	if (B.lib)
		LLVMDisposeModule(B.lib);
	if (st)
		return st;
	(void)o;
	return KILN_OK;
}
