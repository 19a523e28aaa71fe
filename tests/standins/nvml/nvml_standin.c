/*
 * A stand-in libnvidia-ml.so.1 for tests (there is no GPU on the test machines).
 *
 * It exports the NVML entry points the runner's sampler calls through nvidia-ml-py
 * (pynvml), with the real signatures and return codes, and serves values from a small
 * text state file named by $CLUSTERD_NVML_STATE, re-read on every call, so that a test
 * can switch a GPU between busy and idle, or make NVML fail, while a trial runs.
 * The values in the state files come from recorded real nvidia-smi output
 * (tests/standins/nvml/fixtures/, see SOURCES.md); build.py writes the state files.
 *
 * State file, one item per line, "key=value" words (unknown keys are ignored):
 *   mode=recorded | zero | fail
 *   gpu index=0 uuid=GPU-... name=... minor=0 util=65 mem_used=9184 mem_total=10240
 *       power_mw=142330 temp=27 own_mem=512 foreign_pid=5762 foreign_mem=1005
 *   mig parent=0 slot=0 uuid=MIG-... gi=3 ci=0 mem_used=12 mem_total=19968 own_mem=0
 * A value "na" makes that query return NVML_ERROR_NOT_SUPPORTED (as util does on MIG).
 * own_mem=N: every process under the calling process (its descendants in /proc) is
 * reported as a compute process using N MiB on that device; foreign_pid: one more
 * process that is not the caller's.
 * mode=zero: no devices; mode=fail: nvmlInit fails with NVML_ERROR_DRIVER_NOT_LOADED and
 * every other call with NVML_ERROR_UNKNOWN (switching to it mid-run = NVML dying).
 * Every call is counted in $CLUSTERD_NVML_STATE.calls when CLUSTERD_NVML_COUNT=1.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_DRIVER_NOT_LOADED 9
#define NVML_ERROR_UNKNOWN 999

#define MAX_GPUS 16
#define MAX_MIGS 8
#define NA (-1LL)
#define MAX_PIDS 4096

typedef struct device {
    int used, is_mig, index, slot, gi, ci, minor;
    struct device *parent;
    char uuid[96], name[96];
    long long util, mem_used, mem_total, power_mw, temp, own_mem, foreign_pid, foreign_mem;
} device_t;

typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;

static device_t gpus[MAX_GPUS];
static device_t migs[MAX_GPUS][MAX_MIGS];
static int n_gpus;
static char mode[32] = "recorded";
static int initialized;

static long long number(const char *v) {
    if (strcmp(v, "na") == 0) return NA;
    return strtoll(v, NULL, 10);
}

static void field(device_t *d, const char *key, const char *v) {
    if (!strcmp(key, "index")) d->index = atoi(v);
    else if (!strcmp(key, "parent")) d->index = atoi(v);
    else if (!strcmp(key, "slot")) d->slot = atoi(v);
    else if (!strcmp(key, "gi")) d->gi = atoi(v);
    else if (!strcmp(key, "ci")) d->ci = atoi(v);
    else if (!strcmp(key, "minor")) d->minor = atoi(v);
    else if (!strcmp(key, "uuid")) snprintf(d->uuid, sizeof d->uuid, "%s", v);
    else if (!strcmp(key, "name")) {
        /* spaces are written as %20 (words are split on blanks) */
        size_t o = 0;
        for (const char *c = v; *c && o + 1 < sizeof d->name; c++) {
            if (!strncmp(c, "%20", 3)) { d->name[o++] = ' '; c += 2; }
            else d->name[o++] = *c;
        }
        d->name[o] = 0;
    }
    else if (!strcmp(key, "util")) d->util = number(v);
    else if (!strcmp(key, "mem_used")) d->mem_used = number(v);
    else if (!strcmp(key, "mem_total")) d->mem_total = number(v);
    else if (!strcmp(key, "power_mw")) d->power_mw = number(v);
    else if (!strcmp(key, "temp")) d->temp = number(v);
    else if (!strcmp(key, "own_mem")) d->own_mem = number(v);
    else if (!strcmp(key, "foreign_pid")) d->foreign_pid = number(v);
    else if (!strcmp(key, "foreign_mem")) d->foreign_mem = number(v);
}

static void count_call(const char *fn) {
    const char *path = getenv("CLUSTERD_NVML_STATE");
    const char *on = getenv("CLUSTERD_NVML_COUNT");
    if (!path || !on || strcmp(on, "1")) return;
    char calls[4096];
    snprintf(calls, sizeof calls, "%s.calls", path);
    FILE *fh = fopen(calls, "a");
    if (fh) { fprintf(fh, "%s\n", fn); fclose(fh); }
}

/* Re-read the state file; on any problem keep mode "fail" (a broken stand-in must not
 * pass for a working GPU). */
static void load(const char *fn) {
    count_call(fn);
    memset(gpus, 0, sizeof gpus);
    memset(migs, 0, sizeof migs);
    n_gpus = 0;
    snprintf(mode, sizeof mode, "fail");
    const char *path = getenv("CLUSTERD_NVML_STATE");
    if (!path) return;
    FILE *fh = fopen(path, "r");
    if (!fh) return;
    snprintf(mode, sizeof mode, "recorded");
    char line[2048];
    while (fgets(line, sizeof line, fh)) {
        char *save = NULL, *word = strtok_r(line, " \t\r\n", &save);
        if (!word) continue;
        device_t tmp;
        memset(&tmp, 0, sizeof tmp);
        tmp.util = tmp.mem_used = tmp.mem_total = tmp.power_mw = tmp.temp = NA;
        tmp.foreign_pid = NA;
        int kind = 0; /* 1 gpu, 2 mig */
        if (!strcmp(word, "gpu")) kind = 1;
        else if (!strcmp(word, "mig")) kind = 2;
        else if (!strncmp(word, "mode=", 5)) { snprintf(mode, sizeof mode, "%s", word + 5); continue; }
        else continue;
        while ((word = strtok_r(NULL, " \t\r\n", &save))) {
            char *eq = strchr(word, '=');
            if (!eq) continue;
            *eq = 0;
            field(&tmp, word, eq + 1);
        }
        if (kind == 1 && tmp.index >= 0 && tmp.index < MAX_GPUS) {
            tmp.used = 1;
            gpus[tmp.index] = tmp;
            if (tmp.index + 1 > n_gpus) n_gpus = tmp.index + 1;
        } else if (kind == 2 && tmp.index >= 0 && tmp.index < MAX_GPUS && tmp.slot >= 0 &&
                   tmp.slot < MAX_MIGS) {
            tmp.used = 1;
            tmp.is_mig = 1;
            migs[tmp.index][tmp.slot] = tmp;
        }
    }
    fclose(fh);
    for (int i = 0; i < MAX_GPUS; i++)
        for (int j = 0; j < MAX_MIGS; j++) migs[i][j].parent = &gpus[i];
    if (!strcmp(mode, "zero")) n_gpus = 0;
}

static int failing(void) { return strcmp(mode, "fail") == 0; }

/* A handle is a pointer into gpus/migs; the stand-in checks it is one of ours. */
static device_t *dev(void *handle) {
    device_t *d = handle;
    if (d >= &gpus[0] && d < &gpus[MAX_GPUS] && d->used) return d;
    device_t *first = &migs[0][0], *end = first + MAX_GPUS * MAX_MIGS;
    if (d >= first && d < end && d->used) return d;
    return NULL;
}

#define ENTER(name)                                       \
    load(name);                                           \
    if (failing()) return NVML_ERROR_UNKNOWN;             \
    if (!initialized) return NVML_ERROR_UNINITIALIZED;

int nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    load("nvmlInitWithFlags");
    if (failing()) return NVML_ERROR_DRIVER_NOT_LOADED;
    initialized++;
    return NVML_SUCCESS;
}
int nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
int nvmlInit(void) { return nvmlInitWithFlags(0); }

int nvmlShutdown(void) {
    count_call("nvmlShutdown");
    if (initialized) initialized--;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(int result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    default: return "Unknown Error";
    }
}

int nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    ENTER("nvmlSystemGetDriverVersion");
    snprintf(version, length, "stand-in");
    return NVML_SUCCESS;
}

int nvmlDeviceGetCount_v2(unsigned int *count) {
    ENTER("nvmlDeviceGetCount_v2");
    *count = (unsigned int)n_gpus;
    return NVML_SUCCESS;
}
int nvmlDeviceGetCount(unsigned int *count) { return nvmlDeviceGetCount_v2(count); }

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device) {
    ENTER("nvmlDeviceGetHandleByIndex_v2");
    if (index >= (unsigned int)n_gpus || !gpus[index].used) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &gpus[index];
    return NVML_SUCCESS;
}

int nvmlDeviceGetHandleByUUID(const char *uuid, void **device) {
    ENTER("nvmlDeviceGetHandleByUUID");
    for (int i = 0; i < n_gpus; i++) {
        if (gpus[i].used && !strcmp(gpus[i].uuid, uuid)) { *device = &gpus[i]; return NVML_SUCCESS; }
        for (int j = 0; j < MAX_MIGS; j++)
            if (migs[i][j].used && !strcmp(migs[i][j].uuid, uuid)) {
                *device = &migs[i][j];
                return NVML_SUCCESS;
            }
    }
    return NVML_ERROR_NOT_FOUND;
}

int nvmlDeviceGetIndex(void *handle, unsigned int *index) {
    ENTER("nvmlDeviceGetIndex");
    device_t *d = dev(handle);
    if (!d) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->is_mig) return NVML_ERROR_NOT_SUPPORTED; /* as on real MIG device handles */
    *index = (unsigned int)d->index;
    return NVML_SUCCESS;
}

int nvmlDeviceGetMinorNumber(void *handle, unsigned int *minor) {
    ENTER("nvmlDeviceGetMinorNumber");
    device_t *d = dev(handle);
    if (!d || d->is_mig) return NVML_ERROR_INVALID_ARGUMENT;
    *minor = (unsigned int)d->minor;
    return NVML_SUCCESS;
}

static int copy_text(const char *text, char *out, unsigned int length) {
    if (strlen(text) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    snprintf(out, length, "%s", text);
    return NVML_SUCCESS;
}

int nvmlDeviceGetUUID(void *handle, char *uuid, unsigned int length) {
    ENTER("nvmlDeviceGetUUID");
    device_t *d = dev(handle);
    if (!d) return NVML_ERROR_INVALID_ARGUMENT;
    return copy_text(d->uuid, uuid, length);
}

int nvmlDeviceGetName(void *handle, char *name, unsigned int length) {
    ENTER("nvmlDeviceGetName");
    device_t *d = dev(handle);
    if (!d) return NVML_ERROR_INVALID_ARGUMENT;
    return copy_text(d->name, name, length);
}

int nvmlDeviceGetUtilizationRates(void *handle, nvmlUtilization_t *util) {
    ENTER("nvmlDeviceGetUtilizationRates");
    device_t *d = dev(handle);
    if (!d) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->util == NA) return NVML_ERROR_NOT_SUPPORTED;
    util->gpu = (unsigned int)d->util;
    util->memory = 0;
    return NVML_SUCCESS;
}

int nvmlDeviceGetMemoryInfo(void *handle, nvmlMemory_t *mem) {
    ENTER("nvmlDeviceGetMemoryInfo");
    device_t *d = dev(handle);
    if (!d) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->mem_used == NA || d->mem_total == NA) return NVML_ERROR_NOT_SUPPORTED;
    mem->total = (unsigned long long)d->mem_total << 20;
    mem->used = (unsigned long long)d->mem_used << 20;
    mem->free = mem->total - mem->used;
    return NVML_SUCCESS;
}

int nvmlDeviceGetPowerUsage(void *handle, unsigned int *mw) {
    ENTER("nvmlDeviceGetPowerUsage");
    device_t *d = dev(handle);
    if (!d) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->is_mig || d->power_mw == NA) return NVML_ERROR_NOT_SUPPORTED;
    *mw = (unsigned int)d->power_mw;
    return NVML_SUCCESS;
}

int nvmlDeviceGetTemperature(void *handle, int sensor, unsigned int *temp) {
    ENTER("nvmlDeviceGetTemperature");
    device_t *d = dev(handle);
    if (!d || sensor != 0) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->is_mig || d->temp == NA) return NVML_ERROR_NOT_SUPPORTED;
    *temp = (unsigned int)d->temp;
    return NVML_SUCCESS;
}

/* The children of pid from /proc/<pid>/task/<tid>/children (Linux >= 3.5 with
 * CONFIG_PROC_CHILDREN); -1 when the kernel has no such file. */
static int children(unsigned int pid, unsigned int *out, int room) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%u/task", pid);
    DIR *tasks = opendir(path);
    if (!tasks) return 0; /* gone meanwhile */
    int n = 0, seen = 0;
    struct dirent *e;
    while ((e = readdir(tasks)) && n < room) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char file[300];
        snprintf(file, sizeof file, "/proc/%u/task/%.20s/children", pid, e->d_name);
        FILE *fh = fopen(file, "r");
        if (!fh) continue;
        seen = 1;
        unsigned int child;
        while (n < room && fscanf(fh, "%u", &child) == 1) out[n++] = child;
        fclose(fh);
    }
    closedir(tasks);
    return seen ? n : -1;
}

/* The descendants of this process (never itself). */
static int descendants(unsigned int *out, int max) {
    int found = 0;
    unsigned int self = (unsigned int)getpid();
    int got = children(self, out, max);
    if (got >= 0) {
        found = got;
        for (int k = 0; k < found && found < max; k++) {
            got = children(out[k], out + found, max - found);
            if (got > 0) found += got;
        }
        return found;
    }
    /* no children files: walk the parent pids of every process in /proc */
    static unsigned int pid[MAX_PIDS * 8], ppid[MAX_PIDS * 8];
    int n = 0;
    DIR *proc = opendir("/proc");
    if (!proc) return 0;
    struct dirent *e;
    while ((e = readdir(proc)) && n < MAX_PIDS * 8) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300], buf[1024];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *fh = fopen(path, "r");
        if (!fh) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, fh);
        fclose(fh);
        buf[len] = 0;
        char *close = strrchr(buf, ')');
        char state;
        unsigned int parent;
        if (!close || sscanf(close + 2, "%c %u", &state, &parent) != 2) continue;
        if (state == 'Z' || state == 'X') continue;
        pid[n] = (unsigned int)atoi(e->d_name);
        ppid[n] = parent;
        n++;
    }
    closedir(proc);
    unsigned int parents[MAX_PIDS + 1];
    int queued = 0;
    parents[queued++] = self;
    for (int k = 0; k < queued && found < max; k++)
        for (int i = 0; i < n && found < max; i++)
            if (ppid[i] == parents[k]) {
                out[found++] = pid[i];
                if (queued < MAX_PIDS + 1) parents[queued++] = pid[i];
            }
    return found;
}

int nvmlDeviceGetComputeRunningProcesses_v3(void *handle, unsigned int *count,
                                            nvmlProcessInfo_t *infos) {
    ENTER("nvmlDeviceGetComputeRunningProcesses_v3");
    device_t *d = dev(handle);
    if (!d || !count) return NVML_ERROR_INVALID_ARGUMENT;
    static unsigned int pids[MAX_PIDS + 1];
    static nvmlProcessInfo_t found[MAX_PIDS + 1];
    int n = 0;
    if (d->own_mem > 0) {
        int mine = descendants(pids, MAX_PIDS);
        for (int i = 0; i < mine; i++) {
            found[n].pid = pids[i];
            found[n].usedGpuMemory = (unsigned long long)d->own_mem << 20;
            found[n].gpuInstanceId = d->is_mig ? (unsigned int)d->gi : 0xFFFFFFFFu;
            found[n].computeInstanceId = d->is_mig ? (unsigned int)d->ci : 0xFFFFFFFFu;
            n++;
        }
    }
    if (d->foreign_pid > 0 && n < MAX_PIDS + 1) {
        found[n].pid = (unsigned int)d->foreign_pid;
        found[n].usedGpuMemory = (unsigned long long)(d->foreign_mem > 0 ? d->foreign_mem : 0) << 20;
        found[n].gpuInstanceId = found[n].computeInstanceId = 0xFFFFFFFFu;
        n++;
    }
    if (n == 0) { *count = 0; return NVML_SUCCESS; }
    if (!infos || *count < (unsigned int)n) { *count = (unsigned int)n; return NVML_ERROR_INSUFFICIENT_SIZE; }
    memcpy(infos, found, (size_t)n * sizeof *infos);
    *count = (unsigned int)n;
    return NVML_SUCCESS;
}

int nvmlDeviceGetMigMode(void *handle, unsigned int *current, unsigned int *pending) {
    ENTER("nvmlDeviceGetMigMode");
    device_t *d = dev(handle);
    if (!d || d->is_mig) return NVML_ERROR_INVALID_ARGUMENT;
    int on = 0;
    for (int j = 0; j < MAX_MIGS; j++) on |= migs[d->index][j].used;
    *current = *pending = (unsigned int)on;
    return NVML_SUCCESS;
}

int nvmlDeviceGetMaxMigDeviceCount(void *handle, unsigned int *count) {
    ENTER("nvmlDeviceGetMaxMigDeviceCount");
    device_t *d = dev(handle);
    if (!d || d->is_mig) return NVML_ERROR_INVALID_ARGUMENT;
    *count = MAX_MIGS;
    return NVML_SUCCESS;
}

int nvmlDeviceGetMigDeviceHandleByIndex(void *handle, unsigned int index, void **mig) {
    ENTER("nvmlDeviceGetMigDeviceHandleByIndex");
    device_t *d = dev(handle);
    if (!d || d->is_mig || index >= MAX_MIGS) return NVML_ERROR_INVALID_ARGUMENT;
    if (!migs[d->index][index].used) return NVML_ERROR_NOT_FOUND;
    *mig = &migs[d->index][index];
    return NVML_SUCCESS;
}

int nvmlDeviceIsMigDeviceHandle(void *handle, unsigned int *is_mig) {
    ENTER("nvmlDeviceIsMigDeviceHandle");
    device_t *d = dev(handle);
    if (!d) return NVML_ERROR_INVALID_ARGUMENT;
    *is_mig = (unsigned int)d->is_mig;
    return NVML_SUCCESS;
}

int nvmlDeviceGetDeviceHandleFromMigDeviceHandle(void *handle, void **parent) {
    ENTER("nvmlDeviceGetDeviceHandleFromMigDeviceHandle");
    device_t *d = dev(handle);
    if (!d || !d->is_mig) return NVML_ERROR_INVALID_ARGUMENT;
    *parent = d->parent;
    return NVML_SUCCESS;
}

int nvmlDeviceGetGpuInstanceId(void *handle, unsigned int *id) {
    ENTER("nvmlDeviceGetGpuInstanceId");
    device_t *d = dev(handle);
    if (!d || !d->is_mig) return NVML_ERROR_INVALID_ARGUMENT;
    *id = (unsigned int)d->gi;
    return NVML_SUCCESS;
}

int nvmlDeviceGetComputeInstanceId(void *handle, unsigned int *id) {
    ENTER("nvmlDeviceGetComputeInstanceId");
    device_t *d = dev(handle);
    if (!d || !d->is_mig) return NVML_ERROR_INVALID_ARGUMENT;
    *id = (unsigned int)d->ci;
    return NVML_SUCCESS;
}
