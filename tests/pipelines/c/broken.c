/* Misbehaves as the "mode" param says, still allocating through node_alloc so a test can check
 * that the server releases whatever it was handed:
 *   fail: execute returns 1 (and frees what it allocated itself);  null_outputs: *outputs = NULL;
 *   zero_count: an outputs array with count 0;  unspecified: precision UNSPECIFIED;
 *   bad_size: dataBytes disagrees with dims;  no_name: name NULL;  null_data: data NULL;
 *   metadata_fail: getInputsInfo/getOutputsInfo return 1;  ok: out = [1,2] FP32 {1, 2}. */
#include "testnode.h"

static const char* mode_of(const struct CustomNodeParam* params, int paramsCount) {
    const char* mode = param(params, paramsCount, "mode");
    return mode ? mode : "ok";
}

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs,
            int* outputsCount, const struct CustomNodeParam* params, int paramsCount,
            void* customNodeLibraryInternalManager) {
    (void)inputs; (void)inputsCount; (void)customNodeLibraryInternalManager;
    const char* mode = mode_of(params, paramsCount);
    if (strcmp(mode, "fail") == 0) {
        void* scratch = node_alloc(16);
        release(scratch, customNodeLibraryInternalManager);
        return 1;
    }
    if (strcmp(mode, "null_outputs") == 0) {
        *outputs = NULL;
        *outputsCount = 1;
        return 0;
    }
    struct CustomNodeTensor* out = node_alloc(sizeof(struct CustomNodeTensor));
    float* data = node_alloc(2 * sizeof(float));
    data[0] = 1.0f;
    data[1] = 2.0f;
    const uint64_t dims[] = {1, 2};
    out[0] = (struct CustomNodeTensor){"out", (uint8_t*)data, 2 * sizeof(float), dims_of(2, dims), 2, FP32};
    *outputs = out;
    *outputsCount = 1;
    if (strcmp(mode, "zero_count") == 0) {
        /* the array is handed over; its contents are the library's to free */
        release(data, customNodeLibraryInternalManager);
        release(out[0].dims, customNodeLibraryInternalManager);
        *outputsCount = 0;
    } else if (strcmp(mode, "unspecified") == 0) {
        out[0].precision = UNSPECIFIED;
    } else if (strcmp(mode, "bad_size") == 0) {
        out[0].dataBytes = 4;
    } else if (strcmp(mode, "no_name") == 0) {
        out[0].name = NULL;
    } else if (strcmp(mode, "null_data") == 0) {
        release(data, customNodeLibraryInternalManager);
        out[0].data = NULL;
    }
    return 0;
}

static int info(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                int paramsCount, const char* name) {
    if (strcmp(mode_of(params, paramsCount), "metadata_fail") == 0) return 1;
    const uint64_t dims[] = {1, 2};
    return one_info(info, infoCount, name, FP32, 2, dims);
}

int getInputsInfo(struct CustomNodeTensorInfo** i, int* infoCount, const struct CustomNodeParam* params,
                  int paramsCount, void* customNodeLibraryInternalManager) {
    (void)customNodeLibraryInternalManager;
    return info(i, infoCount, params, paramsCount, "in");
}

int getOutputsInfo(struct CustomNodeTensorInfo** i, int* infoCount, const struct CustomNodeParam* params,
                   int paramsCount, void* customNodeLibraryInternalManager) {
    (void)customNodeLibraryInternalManager;
    return info(i, infoCount, params, paramsCount, "out");
}
