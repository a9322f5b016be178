/*
 * test_deploy_replace.c - cspresnet_model_deploy_replace against cspresnet_model_deploy:
 * the same deployed parameters bit for bit although the source layers are released as
 * they are folded (preset s: its tensors span many whole pages, so releases happen),
 * and the refusals that must leave *model as it was. Exit 1 on any failure.
 */
#include <stdio.h>
#include <string.h>

#include "cspresnet.h"
#include "harness.h"


int main(void)
{
    char err[512];
    cspresnet_config cfg;
    cspresnet_model *m = NULL, *copy = NULL;
    if (cspresnet_config_preset("s", &cfg) != CSPRESNET_OK || cspresnet_model_create(&cfg, 7, &m, err, sizeof err) != CSPRESNET_OK) {
        printf("FAIL: cannot create the model: %s\n", err);
        return 1;
    }
    CHECK(cspresnet_model_deploy(m, &copy, err, sizeof err) == CSPRESNET_OK, "deploy: %s", err);
    cspresnet_model *before = m;
    CHECK(cspresnet_model_deploy_replace(&m, err, sizeof err) == CSPRESNET_OK, "deploy_replace: %s", err);
    CHECK(m && m != before && cspresnet_model_is_deployed(m), "deploy_replace did not replace the model");
    size_t n = cspresnet_model_param_count(m);
    CHECK(copy && n == cspresnet_model_param_count(copy), "parameter counts differ");
    size_t same = 0;
    for (size_t i = 0; copy && i < n && i < cspresnet_model_param_count(copy); i++) {
        const char *ka, *kb;
        int64_t sa[4], sb[4];
        int da, db;
        const float *pa, *pb;
        cspresnet_model_param(m, i, &ka, &da, sa, &pa, NULL);
        cspresnet_model_param(copy, i, &kb, &db, sb, &pb, NULL);
        int64_t numel = 1;
        for (int d = 0; d < da; d++)
            numel *= sa[d];
        int ok = strcmp(ka, kb) == 0 && da == db && memcmp(sa, sb, sizeof(int64_t) * (size_t)da) == 0 &&
                 memcmp(pa, pb, sizeof(float) * (size_t)numel) == 0;
        CHECK(ok, "parameter %zu '%s' differs between deploy and deploy_replace", i, ka);
        same += ok;
    }
    /* refusals leave the model untouched */
    cspresnet_model *kept = m;
    CHECK(cspresnet_model_deploy_replace(&m, err, sizeof err) == CSPRESNET_ERR_ARGUMENT && m == kept,
          "a deployed model must be refused and kept");
    CHECK(strstr(err, "already deployed") != NULL, "message '%s'", err);
    CHECK(cspresnet_model_deploy_replace(NULL, err, sizeof err) == CSPRESNET_ERR_ARGUMENT, "NULL accepted");
    cspresnet_model_free(copy);
    cspresnet_model_free(m);
    printf("%zu of %zu deployed parameters identical; %d failures\n", same, n, harness_failed);
    return harness_done();
}
