/* Exports five of the six symbols: loading it must fail on the missing "release". */
int initialize(void** m, const void* params, int paramsCount) { (void)params; (void)paramsCount; *m = 0; return 0; }
int deinitialize(void* m) { (void)m; return 0; }
int execute(void) { return 1; }
int getInputsInfo(void) { return 1; }
int getOutputsInfo(void) { return 1; }
