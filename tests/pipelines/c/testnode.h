/* Shared by the test libraries: every buffer handed to the server comes from node_alloc and
 * goes back through release, which checks the internal manager and counts both, so a test can
 * read live_buffers() == 0 after the server returned everything. */
#ifndef TESTNODE_H
#define TESTNODE_H
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "custom_node_interface.h"

static atomic_long allocated_count;
static atomic_long released_count;
static atomic_long foreign_releases; /* release called with a manager this library did not make */
static atomic_long initialized_count;
static atomic_long deinitialized_count;

long live_buffers(void) { return atomic_load(&allocated_count) - atomic_load(&released_count); }
long total_allocations(void) { return atomic_load(&allocated_count); }
long total_releases(void) { return atomic_load(&released_count); }
long wrong_manager_releases(void) { return atomic_load(&foreign_releases); }
long live_managers(void) { return atomic_load(&initialized_count) - atomic_load(&deinitialized_count); }

/* The internal manager: a small struct holding the params the node was initialized with. */
struct manager {
    long magic;
    float add_value;
    long count;
    int fail_execute;
};
#define MANAGER_MAGIC 0x0715

static inline void* node_alloc(size_t bytes) {
    atomic_fetch_add(&allocated_count, 1);
    return malloc(bytes ? bytes : 1);
}

static inline const char* param(const struct CustomNodeParam* params, int paramsCount, const char* key) {
    for (int i = 0; i < paramsCount; i++)
        if (strcmp(params[i].key, key) == 0) return params[i].value;
    return NULL;
}

int initialize(void** customNodeLibraryInternalManager, const struct CustomNodeParam* params, int paramsCount) {
    const char* fail = param(params, paramsCount, "fail_initialize");
    if (fail && strcmp(fail, "1") == 0) return 3;
    struct manager* m = calloc(1, sizeof(struct manager));
    m->magic = MANAGER_MAGIC;
    const char* add = param(params, paramsCount, "add_value");
    m->add_value = add ? strtof(add, NULL) : 0.0f;
    const char* count = param(params, paramsCount, "count");
    m->count = count ? strtol(count, NULL, 10) : 1;
    *customNodeLibraryInternalManager = m;
    atomic_fetch_add(&initialized_count, 1);
    return 0;
}

int deinitialize(void* customNodeLibraryInternalManager) {
    struct manager* m = customNodeLibraryInternalManager;
    if (m == NULL || m->magic != MANAGER_MAGIC) return 1;
    m->magic = 0;
    free(m);
    atomic_fetch_add(&deinitialized_count, 1);
    /* A test of a server process reads the count of live managers after each deinitialize. */
    const char* path = getenv("TESTNODE_DEINIT_FILE");
    if (path != NULL) {
        FILE* f = fopen(path, "a");
        if (f != NULL) {
            fprintf(f, "%ld\n", live_managers());
            fclose(f);
        }
    }
    return 0;
}

int release(void* ptr, void* customNodeLibraryInternalManager) {
    struct manager* m = customNodeLibraryInternalManager;
    if (m == NULL || m->magic != MANAGER_MAGIC) atomic_fetch_add(&foreign_releases, 1);
    atomic_fetch_add(&released_count, 1);
    free(ptr);
    return 0;
}

static inline uint64_t* dims_of(int count, const uint64_t* values) {
    uint64_t* dims = node_alloc(sizeof(uint64_t) * (size_t)count);
    memcpy(dims, values, sizeof(uint64_t) * (size_t)count);
    return dims;
}

/* One-entry info array: name, precision and dims (0 = dynamic). */
static inline int one_info(struct CustomNodeTensorInfo** info, int* infoCount, const char* name,
                    CustomNodeTensorPrecision precision, int dimsCount, const uint64_t* dims) {
    *info = node_alloc(sizeof(struct CustomNodeTensorInfo));
    (*info)->name = name;
    (*info)->dims = dims_of(dimsCount, dims);
    (*info)->dimsCount = (uint64_t)dimsCount;
    (*info)->precision = precision;
    *infoCount = 1;
    return 0;
}

static inline const struct CustomNodeTensor* input_named(const struct CustomNodeTensor* inputs, int inputsCount,
                                                  const char* name) {
    for (int i = 0; i < inputsCount; i++)
        if (strcmp(inputs[i].name, name) == 0) return &inputs[i];
    return NULL;
}
#endif
