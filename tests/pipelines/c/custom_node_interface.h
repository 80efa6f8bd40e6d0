/* The OVMS custom node C interface, written from its documented layout: struct fields in this
 * order, a plain C enum for precisions, six functions with C linkage returning 0 on success. */
#ifndef CUSTOM_NODE_INTERFACE_H
#define CUSTOM_NODE_INTERFACE_H
#include <stdint.h>

typedef enum {
    UNSPECIFIED = 0, FP32 = 1, FP16 = 2, U8 = 3, I8 = 4, I16 = 5, U16 = 6, I32 = 7, FP64 = 8, I64 = 9
} CustomNodeTensorPrecision;

struct CustomNodeTensor {
    const char* name;
    uint8_t* data;
    uint64_t dataBytes;
    uint64_t* dims;
    uint64_t dimsCount;
    CustomNodeTensorPrecision precision;
};

struct CustomNodeTensorInfo {
    const char* name;
    uint64_t* dims;
    uint64_t dimsCount;
    CustomNodeTensorPrecision precision;
};

struct CustomNodeParam {
    const char* key;
    const char* value;
};

int initialize(void** customNodeLibraryInternalManager, const struct CustomNodeParam* params, int paramsCount);
int deinitialize(void* customNodeLibraryInternalManager);
int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs,
            int* outputsCount, const struct CustomNodeParam* params, int paramsCount,
            void* customNodeLibraryInternalManager);
int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                  int paramsCount, void* customNodeLibraryInternalManager);
int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                   int paramsCount, void* customNodeLibraryInternalManager);
int release(void* ptr, void* customNodeLibraryInternalManager);
#endif
