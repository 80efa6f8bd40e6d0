/* in FP32 [-1,-1] -> out FP32, the same shape: in + the "add_value" param. */
#include "testnode.h"

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs,
            int* outputsCount, const struct CustomNodeParam* params, int paramsCount,
            void* customNodeLibraryInternalManager) {
    (void)params; (void)paramsCount;
    struct manager* m = customNodeLibraryInternalManager;
    const struct CustomNodeTensor* in = input_named(inputs, inputsCount, "in");
    if (in == NULL || in->precision != FP32) return 1;
    size_t n = in->dataBytes / sizeof(float);
    float* data = node_alloc(in->dataBytes);
    const float* src = (const float*)in->data;
    for (size_t i = 0; i < n; i++) data[i] = src[i] + m->add_value;
    *outputs = node_alloc(sizeof(struct CustomNodeTensor));
    (*outputs)->name = "out";
    (*outputs)->data = (uint8_t*)data;
    (*outputs)->dataBytes = in->dataBytes;
    (*outputs)->dims = dims_of((int)in->dimsCount, in->dims);
    (*outputs)->dimsCount = in->dimsCount;
    (*outputs)->precision = FP32;
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
