/* test_npy.c — tools/npy.c: round trips of every dtype and shape kind, one
 * crafted file per error with its exact message, and files exchanged with
 * NumPy itself (skipped, with the reason printed, without the venv). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "npy.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static void quiet(void *user, const char *msg)
{
	(void)user;
	(void)msg;
}

static void diag_quiet(kiln_diag *d)
{
	kiln_diag_init(d, NULL);
	d->fn = quiet;
}

static char *path_in_dir(const char *name)
{
	static char buf[4][400]; /* a few live paths per test */
	static int next;
	char *p = buf[next++ % 4];
	snprintf(p, sizeof buf[0], "%s/%s", dir, name);
	return p;
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/kiln-test-npy-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	DIR *dp = opendir(dir);
	if (dp) {
		struct dirent *e;
		while ((e = readdir(dp)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlink(path_in_dir(e->d_name));
		closedir(dp);
	}
	rmdir(dir);
	return 0;
}

/* Number of entries in the test directory (to catch left-over temp files). */
static int dir_entries(void)
{
	int n = 0;
	DIR *dp = opendir(dir);
	struct dirent *e;
	while (dp && (e = readdir(dp)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	if (dp)
		closedir(dp);
	return n;
}

static void write_raw(const char *path, const void *bytes, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(bytes, 1, n, f), n);
	fclose(f);
}

/* Writes a .npy file with the given version, header text (padded with
 * spaces and '\n' as numpy does) and data. */
static void write_npy(const char *path, int major, const char *dict, const void *data,
                      size_t n)
{
	unsigned char buf[4096];
	size_t pre = major == 1 ? 10 : 12;
	size_t total = (pre + strlen(dict) + 1 + 63) / 64 * 64;
	size_t hlen = total - pre;
	memcpy(buf, "\x93NUMPY", 6);
	buf[6] = (unsigned char)major;
	buf[7] = 0;
	buf[8] = (unsigned char)(hlen & 0xff);
	buf[9] = (unsigned char)(hlen >> 8);
	if (major != 1)
		buf[10] = buf[11] = 0;
	memcpy(buf + pre, dict, strlen(dict));
	memset(buf + pre + strlen(dict), ' ', hlen - strlen(dict) - 1);
	buf[total - 1] = '\n';
	assert_true(total + n <= sizeof buf);
	memcpy(buf + total, data, n);
	write_raw(path, buf, total + n);
}

static void round_trip(const kiln_tensor *t)
{
	const char *path = path_in_dir("rt.npy");
	kiln_diag d;
	diag_quiet(&d);
	assert_int_equal(kiln_npy_write(path, t, &d), KILN_OK);
	kiln_tensor r;
	assert_int_equal(kiln_npy_read(path, &r, &d), KILN_OK);
	assert_true(kiln_type_equal(&r.type, &t->type));
	assert_non_null(r.data);
	assert_memory_equal(r.data, t->data, kiln_type_bytes(&t->type));
	free(r.data);
	unlink(path);
	assert_int_equal(dir_entries(), 0);
}

static void test_round_trip_every_dtype(void **state)
{
	(void)state;
	unsigned char bytes[6 * 8];
	for (size_t i = 0; i < sizeof bytes; i++)
		bytes[i] = (unsigned char)(i * 37 + 11);
	const kiln_dtype dts[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_F64, KILN_DT_I64,
	                          KILN_DT_I32, KILN_DT_I8,  KILN_DT_U8};
	for (size_t k = 0; k < sizeof dts / sizeof *dts; k++) {
		kiln_tensor t = {{dts[k], 2, {2, 3}}, bytes};
		round_trip(&t);
	}
	unsigned char flags[6] = {1, 0, 0, 1, 1, 0};
	kiln_tensor b = {{KILN_DT_BOOL, 2, {3, 2}}, flags};
	round_trip(&b);
}

static void test_round_trip_shapes(void **state)
{
	(void)state;
	float one = 3.5f;
	kiln_tensor scalar = {{KILN_DT_F32, 0, {0}}, &one};
	round_trip(&scalar);
	int64_t v[5] = {-1, 0, 1, INT64_MAX, INT64_MIN};
	kiln_tensor vec = {{KILN_DT_I64, 1, {5}}, v};
	round_trip(&vec);
	kiln_tensor empty = {{KILN_DT_F32, 3, {2, 0, 3}}, &one};
	round_trip(&empty);
	unsigned char r8[2] = {7, 9};
	kiln_tensor rank8 = {{KILN_DT_U8, 8, {1, 1, 1, 2, 1, 1, 1, 1}}, r8};
	round_trip(&rank8);
}

static void test_header_format(void **state)
{
	(void)state;
	const char *path = path_in_dir("h.npy");
	float x[2] = {1, 2};
	kiln_tensor t = {{KILN_DT_F32, 1, {2}}, x};
	kiln_diag d;
	diag_quiet(&d);
	assert_int_equal(kiln_npy_write(path, &t, &d), KILN_OK);
	char buf[256] = {0};
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	/* Like numpy: header padded so the data starts at byte 128 (64-aligned). */
	assert_int_equal(n, 128 + 8);
	assert_memory_equal(buf, "\x93NUMPY\x01\x00\x76\x00", 10);
	const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
	assert_memory_equal(buf + 10, dict, strlen(dict));
	assert_int_equal(buf[127], '\n');
	assert_int_equal(buf[126], ' ');
	unlink(path);
}

static void test_bf16_written_as_f32(void **state)
{
	(void)state;
	const char *path = path_in_dir("bf.npy");
	uint16_t h[3] = {kiln_f32_to_bf16(1.0f), kiln_f32_to_bf16(-2.5f), kiln_f32_to_bf16(0.15625f)};
	kiln_tensor t = {{KILN_DT_BF16, 1, {3}}, h};
	kiln_diag d;
	diag_quiet(&d);
	assert_int_equal(kiln_npy_write(path, &t, &d), KILN_OK);
	kiln_tensor r;
	assert_int_equal(kiln_npy_read(path, &r, &d), KILN_OK);
	assert_int_equal(r.type.dtype, KILN_DT_F32);
	const float *f = r.data;
	assert_true(f[0] == 1.0f && f[1] == -2.5f && f[2] == 0.15625f);
	free(r.data);
	unlink(path);
}

static void test_versions_2_and_3(void **state)
{
	(void)state;
	int32_t v[3] = {5, -6, 7};
	for (int major = 2; major <= 3; major++) {
		const char *path = path_in_dir("v.npy");
		write_npy(path, major, "{\"descr\": \"<i4\", \"shape\": [3], \"fortran_order\": False}",
		          v, sizeof v);
		kiln_tensor r;
		kiln_diag d;
		diag_quiet(&d);
		assert_int_equal(kiln_npy_read(path, &r, &d), KILN_OK);
		assert_int_equal(r.type.dtype, KILN_DT_I32);
		assert_int_equal(r.type.rank, 1);
		assert_int_equal(r.type.dims[0], 3);
		assert_memory_equal(r.data, v, sizeof v);
		free(r.data);
	}
}

/* Reads `path` expecting `status` and the message "PATH: <msg>". */
static void expect_error(const char *path, kiln_status status, const char *msg)
{
	kiln_diag d;
	diag_quiet(&d);
	kiln_tensor t = {{KILN_DT_F32, 1, {1}}, (void *)&d};
	assert_int_equal(kiln_npy_read(path, &t, &d), status);
	assert_null(t.data);
	char want[1024];
	snprintf(want, sizeof want, "%s: %s", path, msg);
	assert_string_equal(d.last, want);
	assert_int_equal(d.n_errors, 1);
}

static void test_errors_file_level(void **state)
{
	(void)state;
	expect_error(path_in_dir("missing.npy"), KILN_ERR_IO,
	             "cannot open: No such file or directory");
	expect_error(dir, KILN_ERR_IO, "cannot read: Is a directory");
	const char *p = path_in_dir("bad.npy");
	write_raw(p, "PK\x03\x04 not npy", 12);
	expect_error(p, KILN_ERR_INVALID_ARG, "not a .npy file (bad magic bytes)");
	write_raw(p, "", 0);
	expect_error(p, KILN_ERR_INVALID_ARG, "not a .npy file (bad magic bytes)");
	write_raw(p, "\x93NUMPY\x01", 7);
	expect_error(p, KILN_ERR_INVALID_ARG, "truncated header (the file ends after 7 bytes)");
	write_raw(p, "\x93NUMPY\x01\x00\x40", 9);
	expect_error(p, KILN_ERR_INVALID_ARG, "truncated header (the file ends after 9 bytes)");
	write_raw(p, "\x93NUMPY\x01\x00\x40\x00{'descr'", 17);
	expect_error(p, KILN_ERR_INVALID_ARG, "truncated header (7 of its 64 bytes present)");
	write_raw(p, "\x93NUMPY\x04\x00\x40\x00", 10);
	expect_error(p, KILN_ERR_INVALID_ARG,
	             "unsupported .npy format version 4.0 (kiln reads 1.0, 2.0 and 3.0)");
	write_raw(p, "\x93NUMPY\x02\x00\xff\xff\xff\x7f", 12);
	expect_error(p, KILN_ERR_INVALID_ARG,
	             "header length 2147483647 is larger than kiln accepts (1048576)");
}

static void test_errors_header(void **state)
{
	(void)state;
	const char *p = path_in_dir("bad.npy");
	static const struct {
		const char *dict, *msg;
	} cases[] = {
		{"{'descr': '<f4', 'fortran_order': False}", "malformed header: no 'shape' key"},
		{"{'descr' '<f4', 'fortran_order': False, 'shape': (1,), }",
		 "malformed header: expected ':' after key 'descr'"},
		{"['descr', '<f4']", "malformed header: expected '{' at the start of the header"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}",
		 "malformed header: unexpected key 'x'"},
		{"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}",
		 "malformed header: key 'descr' appears twice"},
		{"{'descr': '<f4', 'fortran_order': maybe, 'shape': (1,)}",
		 "malformed header: 'fortran_order' must be True or False"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (1, -2)}",
		 "malformed header: 'shape' must be a tuple of non-negative integers"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (1 2)}",
		 "malformed header: expected ',' or ')' in 'shape'"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}",
		 "malformed header: 'shape' has more than 8 dimensions"},
		{"{'descr': '<f4, 'fortran_order': False, 'shape': ()}",
		 "malformed header: expected ',' or '}' after the value of 'descr'"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': ()} extra",
		 "malformed header: unexpected text after the closing '}'"},
		{"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': ()}",
		 "malformed header: structured dtypes are not supported"},
		{"{'descr': '>f4', 'fortran_order': False, 'shape': ()}",
		 "big-endian dtype '>f4' is not supported (kiln reads little-endian .npy files only)"},
		{"{'descr': '<c8', 'fortran_order': False, 'shape': ()}",
		 "unsupported dtype '<c8' (kiln reads <f4, <f2, <f8, <i8, <i4, |i1, |u1, |b1)"},
		{"{'descr': '|O', 'fortran_order': False, 'shape': ()}",
		 "unsupported dtype '|O' (kiln reads <f4, <f2, <f8, <i8, <i4, |i1, |u1, |b1)"},
		{"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2)}",
		 "Fortran-order arrays are not supported (save a C-order array, "
		 "e.g. numpy.ascontiguousarray)"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999)}",
		 "shape (99999999999, 99999999999) is too large"},
	};
	float data[4] = {0};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		write_npy(p, 1, cases[i].dict, data, sizeof data);
		expect_error(p, KILN_ERR_INVALID_ARG, cases[i].msg);
	}
}

static void test_errors_data(void **state)
{
	(void)state;
	const char *p = path_in_dir("bad.npy");
	float data[7] = {0};
	write_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data,
	          5 * sizeof(float));
	expect_error(p, KILN_ERR_INVALID_ARG,
	             "data is truncated: shape (2, 3) of f32 needs 24 bytes, the file has 20");
	write_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data,
	          sizeof data);
	expect_error(p, KILN_ERR_INVALID_ARG,
	             "unexpected bytes after the data of shape (2, 3) (24 bytes of f32)");
	/* Byte order is meaningless for one-byte types; bool bytes normalise to 0/1. */
	unsigned char b[3] = {0, 2, 1};
	write_npy(p, 1, "{'descr': '<b1', 'fortran_order': False, 'shape': (3,), }", b, 3);
	kiln_tensor t;
	kiln_diag d;
	diag_quiet(&d);
	assert_int_equal(kiln_npy_read(p, &t, &d), KILN_OK);
	assert_int_equal(t.type.dtype, KILN_DT_BOOL);
	assert_memory_equal(t.data, "\0\1\1", 3);
	free(t.data);
}

static void test_write_errors(void **state)
{
	(void)state;
	float x = 1;
	kiln_tensor t = {{KILN_DT_F32, 0, {0}}, &x};
	kiln_diag d;
	diag_quiet(&d);
	char path[300];
	snprintf(path, sizeof path, "%s/no/such/dir/out.npy", dir);
	assert_int_equal(kiln_npy_write(path, &t, &d), KILN_ERR_IO);
	char want[400];
	snprintf(want, sizeof want, "%s: cannot write: No such file or directory", path);
	assert_string_equal(d.last, want);

	kiln_tensor bad = {{KILN_DTYPE_COUNT, 0, {0}}, &x};
	const char *p = path_in_dir("bad_dtype.npy");
	assert_int_equal(kiln_npy_write(p, &bad, &d), KILN_ERR_INVALID_ARG);
	snprintf(want, sizeof want, "%s: cannot write: invalid dtype 9", p);
	assert_string_equal(d.last, want);
	kiln_tensor neg = {{KILN_DT_F32, 1, {-1}}, &x};
	assert_int_equal(kiln_npy_write(p, &neg, &d), KILN_ERR_INVALID_ARG);
	snprintf(want, sizeof want, "%s: cannot write: invalid or too large shape", p);
	assert_string_equal(d.last, want);

	/* A write over an existing directory fails at rename: no temp file stays. */
	const char *sub = path_in_dir("taken");
	assert_int_equal(mkdir(sub, 0777), 0);
	int before = dir_entries();
	assert_int_equal(kiln_npy_write(sub, &t, &d), KILN_ERR_IO);
	snprintf(want, sizeof want, "%s: cannot write: Is a directory", sub);
	assert_string_equal(d.last, want);
	assert_int_equal(dir_entries(), before);
	rmdir(sub);
}

/* The venv python, or NULL (with the reason printed) when there is none. */
static const char *python(char *buf, size_t size)
{
	const char *src = getenv("KILN_SOURCE_DIR");
	if (!src) {
		print_message("skipped: KILN_SOURCE_DIR is not set (run through ctest)\n");
		return NULL;
	}
	snprintf(buf, size, "%s/build/venv/bin/python", src);
	if (access(buf, X_OK) != 0) {
		print_message("skipped: no Python venv at %s (run scripts/setup.sh)\n", buf);
		return NULL;
	}
	return buf;
}

static void test_numpy_files(void **state)
{
	(void)state;
	char py[512];
	if (!python(py, sizeof py)) {
		skip();
		return;
	}
	/* numpy writes one file per dtype, each holding arange(6) reshaped (2,3),
	 * plus a scalar and an empty array. */
	char cmd[2048];
	snprintf(cmd, sizeof cmd,
	         "%s -c \"import numpy as np\n"
	         "for n in ['float32','float16','float64','int64','int32','int8','uint8','bool']:\n"
	         "    np.save('%s/np_' + n + '.npy', (np.arange(6) %% 2 == 1 if n == 'bool' else "
	         "np.arange(6).astype(n)).reshape(2, 3))\n"
	         "np.save('%s/np_scalar.npy', np.float32(-1.5))\n"
	         "np.save('%s/np_empty.npy', np.zeros((0, 4), np.int32))\n\"",
	         py, dir, dir, dir);
	assert_int_equal(system(cmd), 0);
	static const struct {
		const char *name;
		kiln_dtype dt;
	} files[] = {{"float32", KILN_DT_F32}, {"float16", KILN_DT_F16}, {"float64", KILN_DT_F64},
	             {"int64", KILN_DT_I64},   {"int32", KILN_DT_I32},   {"int8", KILN_DT_I8},
	             {"uint8", KILN_DT_U8},    {"bool", KILN_DT_BOOL}};
	kiln_diag d;
	diag_quiet(&d);
	for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
		char name[64];
		snprintf(name, sizeof name, "np_%s.npy", files[i].name);
		kiln_tensor t;
		assert_int_equal(kiln_npy_read(path_in_dir(name), &t, &d), KILN_OK);
		assert_int_equal(t.type.dtype, files[i].dt);
		assert_int_equal(t.type.rank, 2);
		assert_int_equal(t.type.dims[0], 2);
		assert_int_equal(t.type.dims[1], 3);
		for (int k = 0; k < 6; k++) {
			double v;
			switch (t.type.dtype) {
			case KILN_DT_F32: v = ((float *)t.data)[k]; break;
			case KILN_DT_F16: v = kiln_f16_to_f32(((uint16_t *)t.data)[k]); break;
			case KILN_DT_F64: v = ((double *)t.data)[k]; break;
			case KILN_DT_I64: v = (double)((int64_t *)t.data)[k]; break;
			case KILN_DT_I32: v = ((int32_t *)t.data)[k]; break;
			case KILN_DT_I8: v = ((int8_t *)t.data)[k]; break;
			default: v = ((uint8_t *)t.data)[k]; break;
			}
			assert_true(v == (t.type.dtype == KILN_DT_BOOL ? k % 2 : k));
		}
		free(t.data);
	}
	kiln_tensor t;
	assert_int_equal(kiln_npy_read(path_in_dir("np_scalar.npy"), &t, &d), KILN_OK);
	assert_int_equal(t.type.rank, 0);
	assert_true(*(float *)t.data == -1.5f);
	free(t.data);
	assert_int_equal(kiln_npy_read(path_in_dir("np_empty.npy"), &t, &d), KILN_OK);
	assert_int_equal(t.type.dtype, KILN_DT_I32);
	assert_int_equal(t.type.rank, 2);
	assert_int_equal(t.type.dims[0], 0);
	assert_int_equal(t.type.dims[1], 4);
	free(t.data);

	/* And numpy reads what kiln writes. */
	int16_t h[4] = {1, -2, 300, -32768};
	kiln_tensor w = {{KILN_DT_F16, 2, {2, 2}}, h};
	h[0] = (int16_t)kiln_f32_to_f16(0.5f);
	h[1] = (int16_t)kiln_f32_to_f16(-3.0f);
	h[2] = (int16_t)kiln_f32_to_f16(65504.0f);
	h[3] = (int16_t)kiln_f32_to_f16(0.0f);
	assert_int_equal(kiln_npy_write(path_in_dir("kiln_f16.npy"), &w, &d), KILN_OK);
	int64_t l[3] = {INT64_MIN, 0, INT64_MAX};
	kiln_tensor wl = {{KILN_DT_I64, 1, {3}}, l};
	assert_int_equal(kiln_npy_write(path_in_dir("kiln_i64.npy"), &wl, &d), KILN_OK);
	snprintf(cmd, sizeof cmd,
	         "%s -c \"import numpy as np\n"
	         "a = np.load('%s/kiln_f16.npy')\n"
	         "assert a.dtype == np.float16 and a.shape == (2, 2), a\n"
	         "assert a.tolist() == [[0.5, -3.0], [65504.0, 0.0]], a\n"
	         "b = np.load('%s/kiln_i64.npy')\n"
	         "assert b.dtype == np.int64 and b.tolist() == [-2**63, 0, 2**63 - 1], b\n\"",
	         py, dir, dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_every_dtype),
		cmocka_unit_test(test_round_trip_shapes),
		cmocka_unit_test(test_header_format),
		cmocka_unit_test(test_bf16_written_as_f32),
		cmocka_unit_test(test_versions_2_and_3),
		cmocka_unit_test(test_errors_file_level),
		cmocka_unit_test(test_errors_header),
		cmocka_unit_test(test_errors_data),
		cmocka_unit_test(test_write_errors),
		cmocka_unit_test(test_numpy_files),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
