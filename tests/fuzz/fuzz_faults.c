/* Fault specs come from the environment or a flag: any string must parse to a
 * rule set or a clear error, never crash, and a parsed set must answer checks. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fault.h"
#include "runtime/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rt_log_set_level(RT_LOG_OFF);
    char *spec = malloc(size + 1);
    if (!spec)
        return 0;
    memcpy(spec, data, size);
    spec[size] = '\0';
    char err[128];
    rt_faults *f = NULL;
    int r = rt_faults_parse(spec, &f, err, sizeof(err));
    if (r == 0) {
        if (!f)
            abort();
        double d;
        for (int i = 0; i < 8; i++) {
            rt_faults_check(f, "store", 1, "recv", &d);
            rt_faults_check(f, "x", 2, "init", &d);
        }
        rt_faults_free(f);
    } else if (f || err[0] == '\0') {
        abort();    /* an error must leave nothing and say why */
    }
    free(spec);
    return 0;
}
