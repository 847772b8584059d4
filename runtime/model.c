/* model.c — loading an artefact and checking its descriptor.
 *
 * kiln_rt_model_load checks the file before dlopen sees it: glibc maps a
 * truncated shared object without complaint and then dies of SIGBUS while
 * relocating it, so every segment must lie inside the file. Then dlopen,
 * dlsym(kiln_model), and the descriptor checks every later step relies on:
 * magic, ABI version, counts, ranks, dims, byte sizes, entry, CPU. */
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt.h"

#if UINTPTR_MAX > 0xffffffffu
typedef Elf64_Ehdr elf_ehdr;
typedef Elf64_Phdr elf_phdr;
#define HOST_CLASS ELFCLASS64
#else
typedef Elf32_Ehdr elf_ehdr;
typedef Elf32_Phdr elf_phdr;
#define HOST_CLASS ELFCLASS32
#endif
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_DATA ELFDATA2LSB
#else
#define HOST_DATA ELFDATA2MSB
#endif
#if defined(__x86_64__)
#define HOST_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define HOST_MACHINE EM_AARCH64
#endif

static const char *machine_name(unsigned m)
{
	return m == EM_X86_64 ? "x86_64" : m == EM_AARCH64 ? "aarch64" : m == EM_386 ? "i386" : NULL;
}

static kiln_rt_status check_elf_file(int fd, const char *path, char *err, size_t err_size)
{
	struct stat st;
	if (fstat(fd, &st))
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_IO, "%s: cannot stat: %s", path,
		                    strerror(errno));
	if (!S_ISREG(st.st_mode))
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_IO, "%s: not a regular file", path);
	elf_ehdr e;
	ssize_t got = pread(fd, &e, sizeof e, 0);
	if (got < SELFMAG || memcmp(e.e_ident, ELFMAG, SELFMAG))
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_NOT_ARTEFACT,
		                    "%s: not an ELF shared object", path);
	if ((size_t)got < sizeof e)
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_NOT_ARTEFACT,
		                    "%s: truncated ELF file (%lld bytes)", path, (long long)st.st_size);
	bool foreign = e.e_ident[EI_CLASS] != HOST_CLASS || e.e_ident[EI_DATA] != HOST_DATA;
#ifdef HOST_MACHINE
	foreign = foreign || e.e_machine != HOST_MACHINE;
	if (foreign) {
		const char *name = machine_name(e.e_machine);
		if (name)
			return kiln_rt_fail(err, err_size, KILN_RT_ERR_CPU,
			                    "%s: built for %s, this machine is %s", path, name,
			                    machine_name(HOST_MACHINE));
	}
#endif
	if (foreign)
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_CPU,
		                    "%s: built for another machine (ELF machine %u)", path,
		                    (unsigned)e.e_machine);
	if (e.e_type != ET_DYN)
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_NOT_ARTEFACT,
		                    "%s: not a shared object (ELF type %u)", path, (unsigned)e.e_type);
	if (e.e_phentsize != sizeof(elf_phdr))
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_NOT_ARTEFACT,
		                    "%s: malformed ELF program headers", path);
	unsigned long long size = (unsigned long long)st.st_size;
	for (unsigned i = 0; i < e.e_phnum; i++) {
		elf_phdr ph;
		unsigned long long at = (unsigned long long)e.e_phoff + (unsigned long long)i * sizeof ph;
		if (at > size || pread(fd, &ph, sizeof ph, (off_t)at) != (ssize_t)sizeof ph)
			return kiln_rt_fail(err, err_size, KILN_RT_ERR_NOT_ARTEFACT,
			                    "%s: truncated ELF file (%llu bytes, program headers cut "
			                    "off)", path, size);
		if (ph.p_filesz && (ph.p_offset > size || ph.p_filesz > size - ph.p_offset))
			return kiln_rt_fail(err, err_size, KILN_RT_ERR_NOT_ARTEFACT,
			                    "%s: truncated ELF file (%llu bytes, a segment ends at "
			                    "byte %llu)", path, size,
			                    (unsigned long long)ph.p_offset + ph.p_filesz);
	}
	return KILN_RT_OK;
}

static kiln_rt_status check_tensor(const kiln_abi_tensor *t, const char *label, const char *kind,
                                   int i, char *err, size_t err_size)
{
	if (!t->name)
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_ABI, "%s: %s %d has no name", label,
		                    kind, i);
	size_t elem = kiln_rt_dtype_size(t->dtype);
	if (!elem)
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_ABI,
		                    "%s: %s %d '%s': dtype %d is not a kiln dtype", label, kind, i,
		                    t->name, (int)t->dtype);
	if (t->rank < 0 || t->rank > KILN_ABI_MAX_RANK)
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_ABI,
		                    "%s: %s %d '%s': rank %d outside [0, %d]", label, kind, i, t->name,
		                    (int)t->rank, KILN_ABI_MAX_RANK);
	int64_t numel = 1;
	for (int d = 0; d < t->rank; d++) {
		if (t->dims[d] < 0 || (t->dims[d] && numel > KILN_RT_MAX_BYTES / t->dims[d]))
			return kiln_rt_fail(err, err_size, KILN_RT_ERR_ABI,
			                    "%s: %s %d '%s': dim %d is %lld, out of range", label, kind,
			                    i, t->name, d, (long long)t->dims[d]);
		numel *= t->dims[d];
	}
	if (t->bytes != numel * (int64_t)elem) {
		char shape[KILN_ABI_MAX_RANK * 21 + 3];
		kiln_rt_format_dims(shape, sizeof shape, t->rank, t->dims);
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_ABI,
		                    "%s: %s %d '%s': bytes %lld, expected %lld for %s %s", label, kind,
		                    i, t->name, (long long)t->bytes, (long long)(numel * (int64_t)elem),
		                    kiln_rt_dtype_name(t->dtype), shape);
	}
	return KILN_RT_OK;
}

/* Everything the session and run code rely on, in the order a reader
 * would check it: is it ours, which version, is it whole, can it run here. */
static kiln_rt_status check_descriptor(const kiln_abi_model *abi, const char *label, char *err,
                                       size_t err_size)
{
	if (abi->magic != KILN_ABI_MAGIC)
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_ABI,
		                    "%s: bad magic 0x%08x, expected 0x%08x (not a kiln descriptor)",
		                    label, (unsigned)abi->magic, KILN_ABI_MAGIC);
	if (abi->version < KILN_ABI_MIN_VERSION || abi->version > KILN_ABI_VERSION)
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_ABI,
		                    "%s: ABI version %u, this runtime speaks versions %u to %u", label,
		                    (unsigned)abi->version, KILN_ABI_MIN_VERSION, KILN_ABI_VERSION);
	if (abi->flags & ~KILN_ABI_FLAG_HOST_SGEMM)
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_ABI,
		                    "%s: unknown descriptor flags 0x%x", label,
		                    (unsigned)(abi->flags & ~KILN_ABI_FLAG_HOST_SGEMM));
	if (abi->n_inputs < 0 || abi->n_outputs < 1 || abi->n_inputs > 1 << 20 ||
	    abi->n_outputs > 1 << 20)
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_ABI,
		                    "%s: bad tensor counts (%d inputs, %d outputs)", label,
		                    (int)abi->n_inputs, (int)abi->n_outputs);
	const struct {
		const char *field;
		bool ok;
	} fields[] = {
		{"name", abi->name},
		{"kiln_version", abi->kiln_version},
		{"triple", abi->triple},
		{"cpu", abi->cpu},
		{"features", abi->features},
		{"inputs", !abi->n_inputs || abi->inputs},
		{"outputs", abi->outputs},
		{"entry", abi->entry},
		{"kernels", abi->n_kernels <= 0 || abi->kernels},
	};
	for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
		if (!fields[i].ok)
			return kiln_rt_fail(err, err_size, KILN_RT_ERR_ABI,
			                    "%s: descriptor field '%s' is NULL", label, fields[i].field);
	if (abi->n_kernels < 0 || abi->n_kernels > 1 << 24)
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_ABI, "%s: bad kernel count %d", label,
		                    (int)abi->n_kernels);
	for (int i = 0; i < abi->n_kernels; i++)
		if (!abi->kernels[i].name || !abi->kernels[i].op)
			return kiln_rt_fail(err, err_size, KILN_RT_ERR_ABI,
			                    "%s: kernel %d has no name or op", label, i);
	for (int i = 0; i < abi->n_inputs; i++) {
		kiln_rt_status st = check_tensor(&abi->inputs[i], label, "input", i, err, err_size);
		if (st)
			return st;
	}
	for (int i = 0; i < abi->n_outputs; i++) {
		kiln_rt_status st = check_tensor(&abi->outputs[i], label, "output", i, err, err_size);
		if (st)
			return st;
	}
	if (abi->arena_bytes < 0 || abi->arena_bytes > KILN_RT_MAX_BYTES)
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_ABI, "%s: arena_bytes %lld out of range",
		                    label, (long long)abi->arena_bytes);
	if (abi->thread_scratch_bytes < 0 || abi->thread_scratch_bytes > KILN_RT_MAX_BYTES)
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_ABI,
		                    "%s: thread_scratch_bytes %lld out of range", label,
		                    (long long)abi->thread_scratch_bytes);
	return kiln_rt_cpu_check(abi, label, err, err_size);
}

static kiln_rt_status wrap(const kiln_abi_model *abi, void *dl, const char *label,
                           kiln_rt_model_t **out, char *err, size_t err_size)
{
	kiln_rt_status st = check_descriptor(abi, label, err, err_size);
	if (st)
		return st;
	kiln_rt_model_t *m = malloc(sizeof *m);
	if (!m)
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_OOM, "%s: out of memory", label);
	m->abi = abi;
	m->dl = dl;
	*out = m;
	return KILN_RT_OK;
}

/* dlerror() usually starts with the path it was given; the message names
 * the file once. */
static const char *strip_path(const char *msg, const char *path)
{
	size_t len = strlen(path);
	if (!msg)
		return "unknown dlopen error";
	if (!strncmp(msg, path, len) && !strncmp(msg + len, ": ", 2))
		return msg + len + 2;
	return msg;
}

kiln_rt_status kiln_rt_model_load(const char *path, kiln_rt_model_t **out, char *err,
                                  size_t err_size)
{
	if (err && err_size)
		err[0] = 0;
	if (out)
		*out = NULL;
	if (!path || !out)
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_INVALID_ARG,
		                    "kiln_rt_model_load: %s is NULL", path ? "out" : "path");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_IO, "%s: cannot open: %s", path,
		                    strerror(errno));
	kiln_rt_status st = check_elf_file(fd, path, err, err_size);
	close(fd);
	if (st)
		return st;

	/* Without a slash dlopen would search the library path, not the file
	 * just checked. */
	char *local = NULL;
	if (!strchr(path, '/')) {
		local = malloc(strlen(path) + 3);
		if (!local)
			return kiln_rt_fail(err, err_size, KILN_RT_ERR_OOM, "%s: out of memory", path);
		strcpy(local, "./");
		strcat(local, path);
	}
	const char *dl_path = local ? local : path;
	void *dl = dlopen(dl_path, RTLD_NOW | RTLD_LOCAL);
	if (!dl)
		st = kiln_rt_fail(err, err_size, KILN_RT_ERR_NOT_ARTEFACT, "%s: cannot load: %s", path,
		                  strip_path(dlerror(), dl_path));
	free(local);
	if (st)
		return st;

	const kiln_abi_model *abi = dlsym(dl, KILN_ABI_SYMBOL);
	if (!abi)
		st = kiln_rt_fail(err, err_size, KILN_RT_ERR_NOT_ARTEFACT,
		                  "%s: no '" KILN_ABI_SYMBOL "' symbol (not a kiln artefact)", path);
	else
		st = wrap(abi, dl, path, out, err, err_size);
	if (st)
		dlclose(dl);
	return st;
}

kiln_rt_status kiln_rt_model_from_abi(const kiln_abi_model *abi, kiln_rt_model_t **out,
                                      char *err, size_t err_size)
{
	if (err && err_size)
		err[0] = 0;
	if (out)
		*out = NULL;
	if (!abi || !out)
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_INVALID_ARG,
		                    "kiln_rt_model_from_abi: %s is NULL", abi ? "out" : "abi");
	return wrap(abi, NULL, KILN_ABI_SYMBOL, out, err, err_size);
}

void kiln_rt_model_free(kiln_rt_model_t *m)
{
	if (!m)
		return;
	if (m->dl)
		dlclose(m->dl);
	free(m);
}

const kiln_abi_model *kiln_rt_model_abi(const kiln_rt_model_t *m)
{
	return m ? m->abi : NULL;
}

const char *kiln_rt_model_name(const kiln_rt_model_t *m)
{
	return m ? m->abi->name : NULL;
}

int kiln_rt_model_n_inputs(const kiln_rt_model_t *m)
{
	return m ? m->abi->n_inputs : 0;
}

int kiln_rt_model_n_outputs(const kiln_rt_model_t *m)
{
	return m ? m->abi->n_outputs : 0;
}

const kiln_abi_tensor *kiln_rt_model_input(const kiln_rt_model_t *m, int i)
{
	return m && i >= 0 && i < m->abi->n_inputs ? &m->abi->inputs[i] : NULL;
}

const kiln_abi_tensor *kiln_rt_model_output(const kiln_rt_model_t *m, int i)
{
	return m && i >= 0 && i < m->abi->n_outputs ? &m->abi->outputs[i] : NULL;
}

static int find(const kiln_abi_tensor *t, int n, const char *name)
{
	for (int i = 0; name && i < n; i++)
		if (!strcmp(t[i].name, name))
			return i;
	return -1;
}

int kiln_rt_model_find_input(const kiln_rt_model_t *m, const char *name)
{
	return m ? find(m->abi->inputs, m->abi->n_inputs, name) : -1;
}

int kiln_rt_model_find_output(const kiln_rt_model_t *m, const char *name)
{
	return m ? find(m->abi->outputs, m->abi->n_outputs, name) : -1;
}

int kiln_rt_model_n_kernels(const kiln_rt_model_t *m)
{
	return m ? m->abi->n_kernels : 0;
}

const kiln_abi_kernel *kiln_rt_model_kernel(const kiln_rt_model_t *m, int k)
{
	return m && k >= 0 && k < m->abi->n_kernels ? &m->abi->kernels[k] : NULL;
}
