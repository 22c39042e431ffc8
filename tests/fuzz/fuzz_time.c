/* SPDX-License-Identifier: MIT */
/*
 * Fuzz mrfs_time_parse, which reads what users type after `@` in a mount
 * path (/models/m/@2026-11-27T05:30:00Z/production) and in --since/--at.
 *
 * Properties:
 *  - any text: no memory error, no undefined behaviour; the result is 0 or
 *    -EINVAL (times past 2262-04-11 do not fit in int64 ns: -EINVAL too);
 *  - a well-formed RFC 3339 time built from the input's bytes (years
 *    1970..2261, fractions of 0..9 digits, Z or a numeric offset) parses,
 *    to the value a reference computation gives;
 *  - mrfs_time_format of a time in 1970..2261 parses back to the same time
 *    at microsecond precision.
 */
#include <inttypes.h>

#include "mrfs/record.h"
#include "fuzz.h"

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static unsigned mdays(unsigned y, unsigned m)
{
	static const unsigned dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : dm[m - 1];
}

static uint32_t take(const uint8_t **data, size_t *size, int bytes)
{
	uint32_t v = 0;

	for (int i = 0; i < bytes; i++) {
		v <<= 8;
		if (*size) {
			v |= **data;
			(*data)++;
			(*size)--;
		}
	}
	return v;
}

/* A well-formed time from the first bytes of the input. */
static void well_formed(const uint8_t *data, size_t size)
{
	char text[96], frac[16] = "", zone[16];
	unsigned y = 1970 + take(&data, &size, 2) % 292; /* to 2261: int64 ns end in 2262 */
	unsigned mo = 1 + take(&data, &size, 1) % 12;
	unsigned d = 1 + take(&data, &size, 1) % mdays(y, mo);
	unsigned h = take(&data, &size, 1) % 24, mi = take(&data, &size, 1) % 60;
	unsigned s = take(&data, &size, 1) % 60;
	unsigned fd = take(&data, &size, 1) % 10; /* fraction digits */
	uint32_t fv = take(&data, &size, 4) % 1000000000u;
	unsigned zk = take(&data, &size, 1) % 4;
	unsigned oh = take(&data, &size, 1) % 24, om = take(&data, &size, 1) % 60;
	char sep = "Tt "[take(&data, &size, 1) % 3];
	int64_t want, got = 0, ns = 0, off = 0;
	int rc;

	if (fd) {
		char all[16];
		snprintf(all, sizeof(all), "%09" PRIu32, fv);
		snprintf(frac, sizeof(frac), ".%.*s", (int)fd, all);
		for (unsigned i = 0; i < 9; i++)
			ns = ns * 10 + (i < fd ? all[i] - '0' : 0);
	}
	if (zk == 0)
		snprintf(zone, sizeof(zone), "Z");
	else if (zk == 1)
		snprintf(zone, sizeof(zone), "z");
	else {
		snprintf(zone, sizeof(zone), "%c%02u:%02u", zk == 2 ? '+' : '-', oh, om);
		off = (zk == 2 ? 1 : -1) * (int64_t)(oh * 3600 + om * 60);
	}
	snprintf(text, sizeof(text), "%04u-%02u-%02u%c%02u:%02u:%02u%s%s", y, mo, d, sep, h, mi, s,
		 frac, zone);
	want =
	    ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) - off) * 1000000000 + ns;
	rc = mrfs_time_parse(text, &got);
	FUZZ_CHECK(rc == 0, "'%s' is RFC 3339 but mrfs_time_parse returned %d", text, rc);
	FUZZ_CHECK(got == want, "'%s' parsed to %" PRId64 ", not %" PRId64, text, got, want);

	/* A date alone is midnight UTC. */
	snprintf(text, sizeof(text), "%04u-%02u-%02u", y, mo, d);
	rc = mrfs_time_parse(text, &got);
	FUZZ_CHECK(rc == 0 && got == days_from_civil(y, mo, d) * 86400 * 1000000000,
		   "'%s' gave %d, %" PRId64, text, rc, got);
}

/* Format then parse: the same time at microsecond precision. */
static void round_trip(const uint8_t *data, size_t size)
{
	uint64_t raw = 0;
	int64_t t, got = 0, max = days_from_civil(2262, 1, 1) * 86400 * 1000000000;
	char text[64];
	int rc;

	for (size_t i = 0; i < 8 && i < size; i++)
		raw = raw << 8 | data[i];
	t = (int64_t)(raw % (uint64_t)max);
	mrfs_time_format(t, text, sizeof(text));
	rc = mrfs_time_parse(text, &got);
	FUZZ_CHECK(rc == 0, "mrfs_time_format(%" PRId64 ") = '%s' does not parse (%d)", t, text,
		   rc);
	FUZZ_CHECK(got == t - t % 1000, "'%s' (from %" PRId64 ") parsed to %" PRId64, text, t, got);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strndup(data, size);
	int64_t t = 0;
	int rc = mrfs_time_parse(text, &t);

	FUZZ_CHECK(rc == 0 || rc == -EINVAL, "mrfs_time_parse('%s') returned %d", text, rc);
	free(text);
	well_formed(data, size);
	round_trip(data, size);
	return 0;
}
