/*
 * vmx_rfc3339: formatting and strict parsing of timestamps.
 */

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "vmx_rfc3339.h"


void
vmx_rfc3339_format(time_t t, char out[VMX_RFC3339_SIZE])
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, VMX_RFC3339_SIZE, "%Y-%m-%dT%H:%M:%SZ", &tm);
}


/* n digits at s as a number, -1 when they are not all digits */
static int
digits(const char *s, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char) s[i])) {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    return v;
}


static int
days_in_month(int year, int month)
{
    static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool             leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    return month == 1 && leap ? 29 : days[month];
}


bool
vmx_rfc3339_parse(const char *s, time_t *t)
{
    struct tm   tm;
    const char *p;
    int         offset = 0;

    if (strlen(s) < sizeof("2026-11-21T10:00:00Z") - 1
        || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't')
        || s[13] != ':' || s[16] != ':')
    {
        return false;
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = digits(s, 4) - 1900;
    tm.tm_mon = digits(s + 5, 2) - 1;
    tm.tm_mday = digits(s + 8, 2);
    tm.tm_hour = digits(s + 11, 2);
    tm.tm_min = digits(s + 14, 2);
    tm.tm_sec = digits(s + 17, 2);
    if (tm.tm_year < 0 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1
        || tm.tm_mday > days_in_month(tm.tm_year + 1900, tm.tm_mon) || tm.tm_hour < 0
        || tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0
        || tm.tm_sec > 60)
    {
        return false;
    }

    p = s + 19;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char) *p)) {
            return false;
        }
        while (isdigit((unsigned char) *p)) {
            p++;
        }
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        offset = 0;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int h = digits(p + 1, 2), m = digits(p + 4, 2);

        if (h < 0 || h > 23 || m < 0 || m > 59) {
            return false;
        }
        offset = (h * 60 + m) * 60 * (*p == '-' ? -1 : 1);
    } else {
        return false;
    }
    *t = timegm(&tm) - offset;
    return true;
}


bool
vmx_rfc3339_normalize(const char *s, time_t *t, char out[VMX_RFC3339_US_SIZE])
{
    struct tm  tm;
    long       usec = 0;
    size_t     n;

    if (!vmx_rfc3339_parse(s, t)) {
        return false;
    }
    if (s[19] == '.') {
        for (int i = 0, scale = 100000; i < 6 && isdigit((unsigned char) s[20 + i]); i++) {
            usec += (s[20 + i] - '0') * scale;
            scale /= 10;
        }
    }
    gmtime_r(t, &tm);
    n = strftime(out, VMX_RFC3339_US_SIZE, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, VMX_RFC3339_US_SIZE - n, ".%06ldZ", usec);
    return true;
}
