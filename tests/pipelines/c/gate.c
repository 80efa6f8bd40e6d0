/* add_const whose execute blocks until the test calls open_gate(); entered() counts the calls
 * that reached execute, so a test can cancel a call that is certainly inside the library. */
#define _POSIX_C_SOURCE 200809L
#include <time.h>

#define execute add_const_execute
#include "add_const.c"
#undef execute

static atomic_int gate_open;
static atomic_long entered_count;

void open_gate(void) { atomic_store(&gate_open, 1); }
long entered(void) { return atomic_load(&entered_count); }

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs,
            int* outputsCount, const struct CustomNodeParam* params, int paramsCount,
            void* customNodeLibraryInternalManager) {
    atomic_fetch_add(&entered_count, 1);
    const struct timespec pause = {0, 1000000};
    while (!atomic_load(&gate_open)) nanosleep(&pause, NULL);
    return add_const_execute(inputs, inputsCount, outputs, outputsCount, params, paramsCount,
                             customNodeLibraryInternalManager);
}
