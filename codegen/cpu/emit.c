/* emit.c — kiln_compile and kiln_compiled_emit: the target machine, LLVM's
 * optimisation pipeline, machine code in-process, and the forms a user can
 * ask for (.so, .o, assembly, LLVM IR, C header). Every file is written to a
 * temporary in its destination folder and renamed, so a failed or
 * interrupted compile never leaves half an artefact behind. */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "cpu.h"

extern char **environ;

double kiln_cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A temp name beside path ("dir/.name.XXXXXX"), opened. */
static int open_temp(const char *path, char *tmp, size_t size)
{
	const char *slash = strrchr(path, '/');
	int dir_len = slash ? (int)(slash - path + 1) : 0;
	snprintf(tmp, size, "%.*s.%s.XXXXXX", dir_len, path, slash ? slash + 1 : path);
	return mkstemp(tmp);
}

kiln_status kiln_cpu_write_file(const char *path, const void *data, size_t size, kiln_diag *d)
{
	char tmp[4096];
	int fd = open_temp(path, tmp, sizeof tmp);
	if (fd < 0)
		return kiln_diag_error(d, KILN_ERR_IO, NULL, "cannot create %s: %s", path,
		                       strerror(errno));
	const char *p = data;
	size_t left = size;
	while (left > 0) {
		ssize_t w = write(fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = errno;
			close(fd);
			unlink(tmp);
			return kiln_diag_error(d, KILN_ERR_IO, NULL, "cannot write %s: %s", path,
			                       strerror(e));
		}
		p += w;
		left -= (size_t)w;
	}
	fchmod(fd, 0644);
	if (close(fd) != 0 || rename(tmp, path) != 0) {
		int e = errno;
		unlink(tmp);
		return kiln_diag_error(d, KILN_ERR_IO, NULL, "cannot write %s: %s", path, strerror(e));
	}
	return KILN_OK;
}

static void init_llvm(void)
{
	/* LLVM's target registry is process-wide; registration is idempotent. */
	LLVMInitializeAllTargetInfos();
	LLVMInitializeAllTargets();
	LLVMInitializeAllTargetMCs();
	LLVMInitializeAllAsmPrinters();
}

/* After the kernel library is linked in: -O0..-O2 drop the unused kernels
 * (the glue was optimised before linking, module.c); -O3 also runs LLVM's
 * full pipeline over kernels and glue together. */
static const char *linked_pipeline(int opt_level)
{
	return opt_level >= 3 ? "globaldce,default<O3>" : "globaldce";
}

kiln_status kiln_cpu_run_passes(kiln_compiled *c, LLVMModuleRef mod, const char *passes,
                                kiln_diag *d)
{
	LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
	LLVMErrorRef perr = LLVMRunPasses(mod, passes, c->tm, po);
	LLVMDisposePassBuilderOptions(po);
	if (!perr)
		return KILN_OK;
	char *m = LLVMGetErrorMessage(perr);
	kiln_status st = kiln_diag_error(d, KILN_ERR_INTERNAL, NULL, "LLVM pipeline: %s", m);
	LLVMDisposeErrorMessage(m);
	return st;
}

kiln_status kiln_compile(const kiln_graph *g, const kiln_compile_opts *o, kiln_compiled **out,
                         kiln_diag *d)
{
	*out = NULL;
	kiln_compile_opts defaults = {.opt_level = 2};
	if (!o)
		o = &defaults;
	if (o->opt_level < 0 || o->opt_level > 3)
		return kiln_diag_error(d, KILN_ERR_INVALID_ARG, NULL, "optimisation level -O%d (use 0..3)",
		                       o->opt_level);
	init_llvm();
	kiln_arena *a = kiln_arena_create(NULL);
	kiln_compiled *c = a ? kiln_arena_alloc(a, sizeof *c) : NULL;
	if (!c) {
		if (a)
			kiln_arena_destroy(a);
		return kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory");
	}
	memset(c, 0, sizeof *c);
	c->arena = a;
	c->opt_level = o->opt_level;
	c->progress = o->progress;
	c->progress_user = o->progress_user;
	snprintf(c->graph_name, sizeof c->graph_name, "%s", g->name ? g->name : "model");
	const char *base = o->name ? o->name : c->graph_name;
	size_t j = 0;
	for (size_t i = 0; base[i] && j + 1 < sizeof c->name; i++) {
		char ch = base[i];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		          (ch >= '0' && ch <= '9' && j > 0) || ch == '_';
		c->name[j++] = ok ? ch : '_';
	}
	if (!j)
		snprintf(c->name, sizeof c->name, "model");

	kiln_status st = kiln_cpu_target_init(&c->target, o->triple, o->cpu, d);
	if (st)
		goto fail;
	c->target.host_gemm = o->host_gemm;
	char *err = NULL;
	LLVMTargetRef target;
	if (LLVMGetTargetFromTriple(c->target.triple, &target, &err)) {
		st = kiln_diag_error(d, KILN_ERR_UNSUPPORTED, NULL, "target '%s': %s", c->target.triple,
		                     err ? err : "unknown");
		LLVMDisposeMessage(err);
		goto fail;
	}
	c->tm = LLVMCreateTargetMachine(target, c->target.triple, c->target.cpu, c->target.features,
	                                o->opt_level ? LLVMCodeGenLevelAggressive : LLVMCodeGenLevelLess,
	                                LLVMRelocPIC, LLVMCodeModelDefault);
	if (!c->tm) {
		st = kiln_diag_error(d, KILN_ERR_UNSUPPORTED, NULL, "no target machine for %s (cpu %s)",
		                     c->target.triple, c->target.cpu);
		goto fail;
	}
	c->ctx = LLVMContextCreate();

	double t0 = kiln_cpu_now();
	/* graph passes run on a copy: the caller's graph is theirs */
	kiln_graph *opt = kiln_graph_clone(g, NULL);
	if (!opt) {
		st = kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory copying the graph");
		goto fail;
	}
	kiln_opt_opts oo = {.opt_level = o->opt_level, .passes = o->passes,
	                    .disable = o->disable_passes};
	st = kiln_optimize(opt, &oo, d);
	if (!st)
		st = kiln_graph_verify(opt, d);
	if (!st)
		st = kiln_cpu_build_module(c, opt, o, d);
	kiln_graph_destroy(opt);
	if (st)
		goto fail;
	double t1 = kiln_cpu_now();
	c->stats.seconds_lower = t1 - t0;
	if (c->progress)
		c->progress(c->progress_user, "optimize", 0, 1);
	st = kiln_cpu_run_passes(c, c->mod, linked_pipeline(o->opt_level), d);
	if (st)
		goto fail;
	c->stats.seconds_optimize = kiln_cpu_now() - t1;
	*out = c;
	return KILN_OK;
fail:
	kiln_compiled_destroy(c);
	return st;
}

const kiln_compile_stats *kiln_compiled_stats(const kiln_compiled *c)
{
	return &c->stats;
}

void kiln_compiled_destroy(kiln_compiled *c)
{
	if (!c)
		return;
	if (c->obj)
		LLVMDisposeMemoryBuffer(c->obj);
	if (c->mod)
		LLVMDisposeModule(c->mod);
	if (c->tm)
		LLVMDisposeTargetMachine(c->tm);
	if (c->ctx)
		LLVMContextDispose(c->ctx);
	kiln_arena_destroy(c->arena);
}

static kiln_status codegen(kiln_compiled *c, LLVMCodeGenFileType kind, LLVMMemoryBufferRef *out,
                           kiln_diag *d)
{
	char *err = NULL;
	if (c->progress)
		c->progress(c->progress_user, "codegen", 0, 1);
	double t0 = kiln_cpu_now();
	if (LLVMTargetMachineEmitToMemoryBuffer(c->tm, c->mod, kind, &err, out)) {
		kiln_status st = kiln_diag_error(d, KILN_ERR_INTERNAL, NULL, "LLVM code generation: %s",
		                                 err ? err : "failed");
		LLVMDisposeMessage(err);
		return st;
	}
	c->stats.seconds_codegen += kiln_cpu_now() - t0;
	return KILN_OK;
}

static kiln_status object_code(kiln_compiled *c, kiln_diag *d)
{
	if (c->obj)
		return KILN_OK;
	return codegen(c, LLVMObjectFile, &c->obj, d);
}

/* The C compiler driver that links shared objects for the target. */
static const char *linker_for(const kiln_compiled *c)
{
	const char *env = getenv("KILN_CC");
	if (env && *env)
		return env;
	char *host = LLVMGetDefaultTargetTriple();
	bool native = !strncmp(host, c->target.triple, strcspn(c->target.triple, "-"));
	LLVMDisposeMessage(host);
	if (native)
		return "cc";
	return c->target.arch == KILN_CPU_ARCH_AARCH64 ? "aarch64-linux-gnu-gcc" : "x86_64-linux-gnu-gcc";
}

/* Runs argv, collecting its stderr into msg. Returns the exit status, or -1
 * if it could not be started. */
static int run_tool(char *const *argv, char *msg, size_t size)
{
	int fds[2];
	msg[0] = 0;
	if (pipe(fds) != 0)
		return -1;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_addclose(&fa, fds[0]);
	pid_t pid;
	int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	if (rc != 0) {
		close(fds[0]);
		snprintf(msg, size, "%s", strerror(rc));
		return -1;
	}
	size_t len = 0;
	ssize_t r;
	char chunk[512];
	while ((r = read(fds[0], chunk, sizeof chunk)) > 0 || (r < 0 && errno == EINTR))
		if (r > 0 && len + 1 < size) {
			size_t take = (size_t)r < size - 1 - len ? (size_t)r : size - 1 - len;
			memcpy(msg + len, chunk, take);
			len += take;
			msg[len] = 0;
		}
	close(fds[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static kiln_status link_so(kiln_compiled *c, const char *path, kiln_diag *d)
{
	KILN_TRY(object_code(c, d));
	const char *tmpdir = getenv("TMPDIR");
	char obj[4096], script[4096], out[4096];
	snprintf(obj, sizeof obj, "%s/kiln-obj-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
	snprintf(script, sizeof script, "%s/kiln-map-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
	int fo = mkstemp(obj), fs = mkstemp(script), fout = open_temp(path, out, sizeof out);
	kiln_status st = KILN_OK;
	if (fo < 0 || fs < 0 || fout < 0) {
		st = kiln_diag_error(d, KILN_ERR_IO, NULL, "cannot create temporary files for %s: %s",
		                     path, strerror(errno));
		goto done;
	}
	static const char map[] = "{ global: " KILN_ABI_SYMBOL "; local: *; };\n";
	const char *buf = LLVMGetBufferStart(c->obj);
	size_t size = LLVMGetBufferSize(c->obj);
	if (write(fo, buf, size) != (ssize_t)size || write(fs, map, sizeof map - 1) != sizeof map - 1) {
		st = kiln_diag_error(d, KILN_ERR_IO, NULL, "cannot write temporary files: %s",
		                     strerror(errno));
		goto done;
	}
	char vs[4200];
	snprintf(vs, sizeof vs, "-Wl,--version-script=%s", script);
	const char *cc = linker_for(c);
	char *argv[] = {(char *)cc, "-shared", "-o", out, obj, vs, "-Wl,-z,noexecstack",
	                "-Wl,-z,relro", "-Wl,--no-undefined", "-lm", NULL};
	char msg[2048];
	if (c->progress)
		c->progress(c->progress_user, "link", 0, 1);
	int rc = run_tool(argv, msg, sizeof msg);
	if (rc != 0) {
		size_t l = strlen(msg);
		while (l && msg[l - 1] == '\n')
			msg[--l] = 0;
		st = kiln_diag_error(d, KILN_ERR_IO, NULL,
		                     "linking %s with '%s' failed%s%s (set KILN_CC to another C "
		                     "compiler driver, or use --emit obj)", path, cc,
		                     msg[0] ? ": " : "", msg);
		goto done;
	}
	if (rename(out, path) != 0)
		st = kiln_diag_error(d, KILN_ERR_IO, NULL, "cannot write %s: %s", path, strerror(errno));
done:
	if (fo >= 0) {
		close(fo);
		unlink(obj);
	}
	if (fs >= 0) {
		close(fs);
		unlink(script);
	}
	if (fout >= 0) {
		close(fout);
		if (st)
			unlink(out);
	}
	return st;
}

kiln_status kiln_compiled_emit(kiln_compiled *c, kiln_emit what, const char *path, kiln_diag *d)
{
	switch (what) {
	case KILN_EMIT_SO:
		return link_so(c, path, d);
	case KILN_EMIT_OBJ:
		KILN_TRY(object_code(c, d));
		return kiln_cpu_write_file(path, LLVMGetBufferStart(c->obj), LLVMGetBufferSize(c->obj), d);
	case KILN_EMIT_ASM: {
		/* Code generation rewrites the module a little (CodeGenPrepare), so
		 * assembly is made from a copy and the object code stays exact. */
		LLVMModuleRef saved = c->mod;
		c->mod = LLVMCloneModule(saved);
		LLVMMemoryBufferRef buf = NULL;
		kiln_status st = codegen(c, LLVMAssemblyFile, &buf, d);
		LLVMDisposeModule(c->mod);
		c->mod = saved;
		if (st)
			return st;
		st = kiln_cpu_write_file(path, LLVMGetBufferStart(buf), LLVMGetBufferSize(buf), d);
		LLVMDisposeMemoryBuffer(buf);
		return st;
	}
	case KILN_EMIT_LLVM: {
		char *text = LLVMPrintModuleToString(c->mod);
		kiln_status st = kiln_cpu_write_file(path, text, strlen(text), d);
		LLVMDisposeMessage(text);
		return st;
	}
	case KILN_EMIT_HEADER:
		return kiln_cpu_emit_header(c, path, d);
	default:
		return kiln_diag_error(d, KILN_ERR_INVALID_ARG, NULL, "unknown output kind %d", (int)what);
	}
}
