/* in FP32 [1,N] -> out FP32 [count,1,N], shard i = in + i; and index I32 [count,1,1] = i.
 * The "count" param sets dim 0 (0 gives the zero-results case). */
#include "testnode.h"

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs,
            int* outputsCount, const struct CustomNodeParam* params, int paramsCount,
            void* customNodeLibraryInternalManager) {
    (void)params; (void)paramsCount;
    struct manager* m = customNodeLibraryInternalManager;
    const struct CustomNodeTensor* in = input_named(inputs, inputsCount, "in");
    if (in == NULL || in->precision != FP32 || in->dimsCount != 2 || in->dims[0] != 1) return 1;
    uint64_t n = in->dims[1];
    uint64_t k = (uint64_t)m->count;
    const float* src = (const float*)in->data;
    float* data = node_alloc(sizeof(float) * k * n);
    int32_t* index = node_alloc(sizeof(int32_t) * k);
    for (uint64_t s = 0; s < k; s++) {
        index[s] = (int32_t)s;
        for (uint64_t j = 0; j < n; j++) data[s * n + j] = src[j] + (float)s;
    }
    struct CustomNodeTensor* out = node_alloc(2 * sizeof(struct CustomNodeTensor));
    const uint64_t out_dims[] = {k, 1, n};
    const uint64_t index_dims[] = {k, 1, 1};
    out[0] = (struct CustomNodeTensor){"out", (uint8_t*)data, sizeof(float) * k * n, dims_of(3, out_dims), 3, FP32};
    out[1] = (struct CustomNodeTensor){"index", (uint8_t*)index, sizeof(int32_t) * k, dims_of(3, index_dims), 3, I32};
    *outputs = out;
    *outputsCount = 2;
    return 0;
}

int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                  int paramsCount, void* customNodeLibraryInternalManager) {
    (void)params; (void)paramsCount; (void)customNodeLibraryInternalManager;
    const uint64_t dims[] = {1, 0};
    return one_info(info, infoCount, "in", FP32, 2, dims);
}

int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                   int paramsCount, void* customNodeLibraryInternalManager) {
    (void)params; (void)paramsCount; (void)customNodeLibraryInternalManager;
    struct CustomNodeTensorInfo* out = node_alloc(2 * sizeof(struct CustomNodeTensorInfo));
    const uint64_t out_dims[] = {0, 1, 0};
    const uint64_t index_dims[] = {0, 1, 1};
    out[0] = (struct CustomNodeTensorInfo){"out", dims_of(3, out_dims), 3, FP32};
    out[1] = (struct CustomNodeTensorInfo){"index", dims_of(3, index_dims), 3, I32};
    *info = out;
    *infoCount = 2;
    return 0;
}
