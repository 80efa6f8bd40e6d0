#define _POSIX_C_SOURCE 200809L
/* Like add_const, but execute blocks until the test calls open_gate(); entered() counts the
 * calls that reached execute, so a test can cancel a call that is certainly inside the library. */
#include <time.h>
#include "testnode.h"

static atomic_int gate_open;
static atomic_long entered_count;

void open_gate(void) { atomic_store(&gate_open, 1); }
long entered(void) { return atomic_load(&entered_count); }

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs,
            int* outputsCount, const struct CustomNodeParam* params, int paramsCount,
            void* customNodeLibraryInternalManager) {
    (void)params; (void)paramsCount;
    atomic_fetch_add(&entered_count, 1);
    const struct timespec pause = {0, 1000000};
    while (!atomic_load(&gate_open)) nanosleep(&pause, NULL);
    struct manager* m = customNodeLibraryInternalManager;
    const struct CustomNodeTensor* in = input_named(inputs, inputsCount, "in");
    if (in == NULL || in->precision != FP32) return 1;
    size_t n = in->dataBytes / sizeof(float);
    float* data = node_alloc(in->dataBytes);
    const float* src = (const float*)in->data;
    for (size_t i = 0; i < n; i++) data[i] = src[i] + m->add_value;
    *outputs = node_alloc(sizeof(struct CustomNodeTensor));
    **outputs = (struct CustomNodeTensor){"out", (uint8_t*)data, in->dataBytes,
                                          dims_of((int)in->dimsCount, in->dims), in->dimsCount, FP32};
    *outputsCount = 1;
    return 0;
}

int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                  int paramsCount, void* customNodeLibraryInternalManager) {
    (void)params; (void)paramsCount; (void)customNodeLibraryInternalManager;
    const uint64_t dims[] = {0, 0};
    return one_info(info, infoCount, "in", FP32, 2, dims);
}

int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                   int paramsCount, void* customNodeLibraryInternalManager) {
    (void)params; (void)paramsCount; (void)customNodeLibraryInternalManager;
    const uint64_t dims[] = {0, 0};
    return one_info(info, infoCount, "out", FP32, 2, dims);
}
