/* Unit tests for lib/cdbmap.c: build, look up, refresh after a rebuild. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cdbmap.h"

static char map_dir[64];
static char map_path[128];

static void
make_map_dir(void)
{
	strcpy(map_dir, "/tmp/estafeta-cdbmap-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(map_dir));
	snprintf(map_path, sizeof map_path, "%s/map.cdb", map_dir);
}

static void
remove_map_dir(void)
{
	char temp_path[160];

	snprintf(temp_path, sizeof temp_path, "%s.tmp", map_path);
	unlink(temp_path);
	unlink(map_path);
	rmdir(map_dir);
}

static void
build_map(const char *const *pairs)
{
	struct cdbmap_writer *writer = cdbmap_create(map_path);

	ck_assert_ptr_nonnull(writer);
	for (size_t i = 0; pairs[i] != NULL; i += 2)
		ck_assert_int_eq(cdbmap_add(writer, pairs[i], pairs[i + 1]), 0);
	ck_assert_int_eq(cdbmap_commit(writer), 0);
}

START_TEST(round_trip)
{
	static const char *const pairs[] = {
		"root", "alice", "postmaster", "root",
		"team@example.test", "alice@example.test, bob@example.test", "empty", "",
		NULL,
	};
	struct cdbmap *map;
	char *value = NULL;
	struct stat st;
	char temp_path[160];

	make_map_dir();
	build_map(pairs);

	snprintf(temp_path, sizeof temp_path, "%s.tmp", map_path);
	ck_assert_int_eq(stat(temp_path, &st), -1);

	map = cdbmap_open(map_path);
	ck_assert_ptr_nonnull(map);
	ck_assert_int_eq(cdbmap_lookup(map, "root", &value), 1);
	ck_assert_str_eq(value, "alice");
	free(value);
	ck_assert_int_eq(cdbmap_lookup(map, "team@example.test", &value), 1);
	ck_assert_str_eq(value, "alice@example.test, bob@example.test");
	free(value);
	ck_assert_int_eq(cdbmap_lookup(map, "empty", &value), 1);
	ck_assert_str_eq(value, "");
	free(value);
	ck_assert_int_eq(cdbmap_lookup(map, "nobody-here", &value), 0);
	ck_assert_int_eq(cdbmap_lookup(map, "Root", &value), 0);
	cdbmap_close(map);
	remove_map_dir();
}
END_TEST

START_TEST(duplicate_key_first_wins)
{
	static const char *const pairs[] = { "a", "first", "a", "second", NULL };
	struct cdbmap *map;
	char *value = NULL;

	make_map_dir();
	build_map(pairs);
	map = cdbmap_open(map_path);
	ck_assert_ptr_nonnull(map);
	ck_assert_int_eq(cdbmap_lookup(map, "a", &value), 1);
	ck_assert_str_eq(value, "first");
	free(value);
	cdbmap_close(map);
	remove_map_dir();
}
END_TEST

START_TEST(refresh_after_rebuild)
{
	static const char *const before[] = { "a", "old", NULL };
	static const char *const after[] = { "a", "new", "b", "added", NULL };
	struct cdbmap *map, *opened;
	char *value = NULL;

	make_map_dir();
	build_map(before);
	map = cdbmap_open(map_path);
	ck_assert_ptr_nonnull(map);
	opened = map;

	cdbmap_refresh(&map, map_path);
	ck_assert_ptr_eq(map, opened);

	build_map(after);
	cdbmap_refresh(&map, map_path);
	ck_assert_int_eq(cdbmap_lookup(map, "a", &value), 1);
	ck_assert_str_eq(value, "new");
	free(value);
	ck_assert_int_eq(cdbmap_lookup(map, "b", &value), 1);
	ck_assert_str_eq(value, "added");
	free(value);
	cdbmap_close(map);
	remove_map_dir();
}
END_TEST

START_TEST(refresh_keeps_map_when_file_removed)
{
	static const char *const pairs[] = { "a", "kept", NULL };
	struct cdbmap *map;
	char *value = NULL;

	make_map_dir();
	build_map(pairs);
	map = cdbmap_open(map_path);
	ck_assert_ptr_nonnull(map);
	unlink(map_path);
	cdbmap_refresh(&map, map_path);
	ck_assert_ptr_nonnull(map);
	ck_assert_int_eq(cdbmap_lookup(map, "a", &value), 1);
	ck_assert_str_eq(value, "kept");
	free(value);
	cdbmap_close(map);
	remove_map_dir();
}
END_TEST

START_TEST(open_missing_or_invalid)
{
	FILE *fp;

	make_map_dir();
	ck_assert_ptr_null(cdbmap_open(map_path));

	fp = fopen(map_path, "w");
	ck_assert_ptr_nonnull(fp);
	fputs("not a cdb", fp);
	fclose(fp);
	ck_assert_ptr_null(cdbmap_open(map_path));
	remove_map_dir();
}
END_TEST

START_TEST(abort_removes_temp_file)
{
	struct cdbmap_writer *writer;
	char temp_path[160];
	struct stat st;

	make_map_dir();
	writer = cdbmap_create(map_path);
	ck_assert_ptr_nonnull(writer);
	ck_assert_int_eq(cdbmap_add(writer, "a", "b"), 0);
	cdbmap_abort(writer);
	snprintf(temp_path, sizeof temp_path, "%s.tmp", map_path);
	ck_assert_int_eq(stat(temp_path, &st), -1);
	ck_assert_int_eq(stat(map_path, &st), -1);
	remove_map_dir();
}
END_TEST

Suite *
cdbmap_suite(void)
{
	Suite *suite = suite_create("cdbmap");
	TCase *tc = tcase_create("cdbmap");

	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, duplicate_key_first_wins);
	tcase_add_test(tc, refresh_after_rebuild);
	tcase_add_test(tc, refresh_keeps_map_when_file_removed);
	tcase_add_test(tc, open_missing_or_invalid);
	tcase_add_test(tc, abort_removes_temp_file);
	suite_add_tcase(suite, tc);
	return suite;
}
