/* LD_PRELOAD shim for tests: moves the wall clock only.
 *
 * clock_gettime(CLOCK_REALTIME*), gettimeofday() and time() return the real time plus the
 * number of seconds written in the file named by $JANUS_CLOCK_SHIFT_FILE (0 while the file is
 * missing), re-read at most every 20 ms of monotonic time, so a test can step the wall clock of
 * running processes. CLOCK_MONOTONIC and every other clock are untouched, and so is the kernel:
 * an absolute CLOCK_REALTIME deadline computed from the shifted time is off by the shift, as
 * after a real step of the clock.
 *
 * Built by tests/integration/test_clock_step.py with: gcc -shared -fPIC -O2 -o x.so this.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);
typedef int (*gettimeofday_fn)(struct timeval *, void *);

static clock_gettime_fn real_clock_gettime;
static gettimeofday_fn real_gettimeofday;
static volatile long shift_seconds;
static volatile long long next_read_ns;

__attribute__((constructor)) static void resolve(void) {
    real_clock_gettime = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    real_gettimeofday = (gettimeofday_fn)dlsym(RTLD_NEXT, "gettimeofday");
}

static long current_shift(void) {
    struct timespec now;
    real_clock_gettime(CLOCK_MONOTONIC, &now);
    long long now_ns = now.tv_sec * 1000000000LL + now.tv_nsec;
    if (now_ns < next_read_ns)
        return shift_seconds;
    long value = 0;
    const char *path = getenv("JANUS_CLOCK_SHIFT_FILE");
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        char text[32];
        ssize_t got = read(fd, text, sizeof text - 1);
        close(fd);
        if (got > 0) {
            text[got] = '\0';
            value = strtol(text, NULL, 10);
        }
    }
    shift_seconds = value;
    next_read_ns = now_ns + 20000000LL;
    return value;
}

static int is_wall_clock(clockid_t clock) {
    return clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE;
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    int rc = real_clock_gettime(clock, ts);
    if (rc == 0 && is_wall_clock(clock))
        ts->tv_sec += current_shift();
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    int rc = real_gettimeofday(tv, tz);
    if (rc == 0 && tv != NULL)
        tv->tv_sec += current_shift();
    return rc;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out != NULL)
        *out = ts.tv_sec;
    return ts.tv_sec;
}
